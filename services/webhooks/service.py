"""`mediacdr webhooks`: the outbox writer and the sender, in one process.

- **Outbox.** A member of the consumer group ``MEDIACDR_WEBHOOK_GROUP_ID`` reads the CDR topic and
  writes each batch as pending deliveries together with its consumed positions (one transaction;
  positions in SQL, sought on assignment, like the projector). A kill -9 loses nothing: what was
  not committed is read again and deduplicated by (subscription, ce_id).
- **Sender.** Repeatedly takes the deliveries that are due and are the head of their
  (subscription, record key) queue — of the CDR partitions this process's outbox is assigned,
  so several processes in one group split the sending by partition as they split the reading —
  and attempts them with bounded concurrency over keep-alive connections; answers are stored
  in batches (``dispatch.py``). A key is never attempted twice at once, and its next event is
  due only once the earlier result is stored, so each key's events go in CDR order; keys
  proceed in parallel. After a restart or a rebalance, at most the attempts that were in
  flight or answered but not yet stored are sent again (same webhook-id: receivers
  deduplicate by it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.config import WebhookSettings
from services.core import codec
from services.core.errors import InvalidJson
from services.core.webhooks import decode_secret
from services.kafka_clients import new_consumer
from services.observability import Heartbeat, LagReporter, all_healthy, metrics_server
from services.readers import SeekToStoredPositions, consumer_lags
from services.signals import stop_on_signals
from services.store.migrate import checked_engine
from services.store.outage import serve_through_outages
from services.store.positions import Position
from services.store.webhooks import OutboxRecord, WebhookStore
from services.topics import ensure_topics
from services.webhooks import metrics
from services.webhooks.dispatch import Dispatcher
from services.webhooks.http import open_post
from services.webhooks.sender import Sender, parse_header
from services.webhooks.urls import InvalidWebhookUrl, checked_url

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
        decode_secret(settings.webhook_secret.get_secret_value())  # InvalidSecret says why
    for line in settings.webhook_headers:
        parse_header(line)
    if settings.webhook_endpoint:
        try:
            checked_url(settings.webhook_endpoint, allow_private=settings.webhook_allow_private)
        except InvalidWebhookUrl as e:
            raise ValueError(f"MEDIACDR_WEBHOOK_ENDPOINT: {e}") from e


class _Owned:
    """The CDR partitions this process's outbox consumer is assigned: the sender sends their
    deliveries only, so with several webhooks processes in one group each key is served by
    one of them (the owner of its partition) at a time. Before the consumer has joined, none."""

    def __init__(self) -> None:
        self.consumer: AIOKafkaConsumer | None = None

    def __call__(self) -> frozenset[int]:
        if self.consumer is None:
            return frozenset()
        return frozenset(tp.partition for tp in self.consumer.assignment())


async def _outbox(
    settings: WebhookSettings,
    store: WebhookStore,
    stop: asyncio.Event,
    wake: asyncio.Event,
    heartbeat: Heartbeat,
    owned: _Owned,
) -> None:
    consumer = new_consumer(
        settings,
        group_id=settings.webhook_group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.webhook_batch_size,
    )
    consumer.subscribe(
        [settings.topic_cdr], listener=SeekToStoredPositions(consumer, store.positions)
    )
    await consumer.start()
    owned.consumer = consumer
    lag = LagReporter("webhooks")
    commits = _Commits(consumer)
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
            commits.add({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
    finally:
        owned.consumer = None
        lag.clear()
        await commits.close()
        await consumer.stop()


class _Commits:
    """Kafka commits of the consumed offsets, for lag tools only (SQL holds the positions): one
    at a time in the background, so the outbox never waits for the group coordinator. Awaited in
    the loop, a commit took about as long as the batch's SQL transaction (25 ms on the benchmark
    machine) and delayed every record behind it."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.pending: dict[TopicPartition, int] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, offsets: dict[TopicPartition, int]) -> None:
        self.pending.update(offsets)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._commit())

    async def close(self) -> None:
        if self.task is not None:
            await self.task
        await self._commit()

    async def _commit(self) -> None:
        offsets, self.pending = self.pending, {}
        if offsets:
            with contextlib.suppress(Exception):  # lag reporting only; SQL is the truth
                await self.consumer.commit(offsets)


async def _send(
    settings: WebhookSettings,
    store: WebhookStore,
    stop: asyncio.Event,
    wake: asyncio.Event,
    heartbeat: Heartbeat,
    owned: _Owned,
) -> None:
    concurrency = settings.webhook_concurrency
    async with open_post(
        timeout_s=settings.webhook_timeout_s,
        concurrency=concurrency,
        allow_private=settings.webhook_allow_private,
    ) as post:
        sender = Sender(post, settings.webhook_retry_schedule_s, settings.webhook_jitter)
        await Dispatcher(store, sender, concurrency, wake, owned=owned).run(
            stop,
            heartbeat.beat,
            poll_s=settings.webhook_poll_ms / 1000,
            drain_s=settings.webhook_timeout_s + 5,
        )


async def _depths(store: WebhookStore, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):
            counts = await asyncio.to_thread(store.pending_counts)
            for sub in await asyncio.to_thread(store.subscriptions):
                metrics.QUEUE_DEPTH.labels(sub.id).set(counts.get(sub.id, 0))
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
            secret=(
                settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            ),
            headers=settings.webhook_headers,
            events=settings.webhook_events,
        )
        await ensure_topics(settings)
        wake, owned = asyncio.Event(), _Owned()
        tasks = [
            asyncio.create_task(_outbox(settings, store, stop, wake, outbox, owned), name="outbox"),
            asyncio.create_task(_send(settings, store, stop, wake, sender, owned), name="sender"),
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
        webhook_store(settings).engine.dispose()  # a wrong URL or schema stops it here
        await serve_through_outages(lambda inner: serve(settings, inner), stop, "webhooks")

    asyncio.run(main())
