"""`mediacdr webhooks`: the outbox writer and the sender, in one process.

- **Outbox.** A member of the consumer group ``MEDIACDR_WEBHOOK_GROUP_ID`` reads the CDR topic and
  writes each batch as pending deliveries together with its consumed positions (one transaction;
  positions in SQL, sought on assignment, like the projector). A kill -9 loses nothing: what was
  not committed is read again and deduplicated by (subscription, ce_id).
- **Sender.** Repeatedly takes the deliveries that are due and are the head of their
  (subscription, record key) queue, and attempts them with bounded concurrency over keep-alive
  connections. A key is never attempted twice at once, so each key's events go in CDR order; keys
  proceed in parallel. After a restart, at most the attempts that were in flight are sent again
  (same webhook-id: receivers deduplicate by it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.config import WebhookSettings
from services.core import codec
from services.core.errors import InvalidJson
from services.core.webhooks import decode_secret
from services.observability import Heartbeat, LagReporter, all_healthy, metrics_server
from services.readers import SeekToStoredPositions, consumer_lags
from services.signals import stop_on_signals
from services.store.migrate import checked_engine
from services.store.positions import Position
from services.store.webhooks import OutboxRecord, WebhookStore
from services.topics import ensure_topics
from services.webhooks import metrics
from services.webhooks.sender import Sender, parse_header

__all__ = ["outbox_records", "run_webhooks", "serve", "webhook_store"]

log = logging.getLogger(__name__)
#: /health says unhealthy when the outbox or the sender loop has not turned for this long.
STALE_AFTER_S = 60.0


def webhook_store(settings: WebhookSettings) -> WebhookStore:
    """The store of ``settings``; raises ``SchemaNotReady`` before a ``mediacdr migrate``."""
    engine = checked_engine(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    return WebhookStore(engine)


def outbox_records(
    records: Sequence[ConsumerRecord[bytes, bytes]],
) -> tuple[list[OutboxRecord], int]:
    """The records to deliver, and how many could not be (not a JSON event): counted, skipped."""
    found, unusable = [], 0
    for r in records:
        try:
            body = codec.decode_json_object(r.value)
        except InvalidJson:
            unusable += 1
            continue
        event = body.get("event")
        if not isinstance(event, str):
            unusable += 1
            continue
        headers = dict(r.headers)
        raw_id = headers.get("ce_id")
        event_id = raw_id.decode() if raw_id else codec.ce_id(event, body)
        key = (r.key or b"").decode("utf-8", "replace")
        found.append(
            OutboxRecord(event_id, event, key, r.partition, r.offset, r.timestamp, r.value or b"")
        )
    return found, unusable


def _check_config(settings: WebhookSettings) -> None:
    if settings.webhook_secret:
        decode_secret(settings.webhook_secret)  # InvalidSecret says what is wrong
    for line in settings.webhook_headers:
        parse_header(line)
    if settings.webhook_endpoint and not settings.webhook_endpoint.startswith(
        ("http://", "https://")
    ):
        raise ValueError("MEDIACDR_WEBHOOK_ENDPOINT must be an http:// or https:// URL")


async def _outbox(
    settings: WebhookSettings,
    store: WebhookStore,
    stop: asyncio.Event,
    wake: asyncio.Event,
    heartbeat: Heartbeat,
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.webhook_group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.webhook_batch_size,
    )
    consumer.subscribe(
        [settings.topic_cdr], listener=SeekToStoredPositions(consumer, store.positions)
    )
    await consumer.start()
    lag = LagReporter("webhooks")
    try:
        while not stop.is_set():
            heartbeat.beat()
            batch = await consumer.getmany(timeout_ms=200, max_records=settings.webhook_batch_size)
            if lag.due():
                lag.set(await consumer_lags(consumer))
            batch = {tp: rs for tp, rs in batch.items() if rs}
            if not batch:
                continue
            records: list[OutboxRecord] = []
            positions: dict[Position, int] = {}
            for tp, consumed in batch.items():
                found, unusable = outbox_records(consumed)
                if unusable:
                    log.warning("%d unusable records on %s[%d]", unusable, tp.topic, tp.partition)
                records += found
                positions[(tp.topic, tp.partition)] = consumed[-1].offset + 1
            new = await asyncio.to_thread(store.enqueue, records, positions)
            metrics.ENQUEUED.inc(new)
            wake.set()
            with contextlib.suppress(Exception):  # lag reporting only; SQL is the truth
                await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
    finally:
        lag.clear()
        await consumer.stop()


async def _send(
    settings: WebhookSettings,
    store: WebhookStore,
    stop: asyncio.Event,
    wake: asyncio.Event,
    heartbeat: Heartbeat,
) -> None:
    limits = httpx.Limits(
        max_connections=settings.webhook_concurrency,
        max_keepalive_connections=settings.webhook_concurrency,
    )
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_s, limits=limits) as client:
        sender = Sender(store, client, settings.webhook_retry_schedule_s, settings.webhook_jitter)
        in_flight: dict[tuple[str, str], asyncio.Task[str]] = {}
        poll = settings.webhook_poll_ms / 1000
        while not stop.is_set():
            heartbeat.beat()
            free = settings.webhook_concurrency - len(in_flight)
            if free > 0:
                due = await asyncio.to_thread(store.due, datetime.now(UTC), free + len(in_flight))
                for d in due:
                    key = (d.subscription_id, d.record_key)
                    if key in in_flight or len(in_flight) >= settings.webhook_concurrency:
                        continue
                    in_flight[key] = asyncio.create_task(sender.attempt(d))
            wake.clear()
            waiters: set[asyncio.Future[object]] = set(in_flight.values())  # type: ignore[arg-type]
            woken = asyncio.ensure_future(wake.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                waiters | {woken, stopped}, timeout=poll, return_when=asyncio.FIRST_COMPLETED
            )
            woken.cancel()
            stopped.cancel()
            for key, task in list(in_flight.items()):
                if task.done():
                    del in_flight[key]
                    if task.exception() is not None:
                        log.error("delivery attempt crashed", exc_info=task.exception())
        if in_flight:  # finish what was started, so a clean stop re-sends nothing
            await asyncio.wait(in_flight.values(), timeout=settings.webhook_timeout_s + 5)


async def _depths(store: WebhookStore, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):
            counts = await asyncio.to_thread(store.counts)
            for sub in await asyncio.to_thread(store.subscriptions):
                metrics.QUEUE_DEPTH.labels(sub.id).set(counts.get(sub.id, {}).get("pending", 0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=5)


async def serve(settings: WebhookSettings, stop: asyncio.Event) -> None:
    """Run the outbox and the sender until ``stop`` is set. Serves ``/health`` and ``/metrics``
    on ``MEDIACDR_METRICS_ADDR`` meanwhile (when set): healthy while both loops turn."""
    _check_config(settings)
    outbox, sender = Heartbeat("outbox", STALE_AFTER_S), Heartbeat("sender", STALE_AFTER_S)
    with metrics_server(settings.metrics_addr, all_healthy(outbox.health, sender.health)):
        try:
            await _serve(settings, stop, outbox, sender)
        finally:
            outbox.stop()
            sender.stop()


async def _serve(
    settings: WebhookSettings, stop: asyncio.Event, outbox: Heartbeat, sender: Heartbeat
) -> None:
    store = webhook_store(settings)
    try:
        await asyncio.to_thread(
            store.put_default,
            settings.webhook_endpoint,
            secret=settings.webhook_secret,
            headers=settings.webhook_headers,
            events=settings.webhook_events,
        )
        await ensure_topics(settings)
        wake = asyncio.Event()
        tasks = [
            asyncio.create_task(_outbox(settings, store, stop, wake, outbox), name="outbox"),
            asyncio.create_task(_send(settings, store, stop, wake, sender), name="sender"),
            asyncio.create_task(_depths(store, stop), name="depths"),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        store.engine.dispose()


def run_webhooks(settings: WebhookSettings) -> None:
    """Run until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = stop_on_signals()
        await serve(settings, stop)

    asyncio.run(main())
