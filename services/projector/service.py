"""`mediacdr projector`: a consumer-group member that keeps the SQL projection up to date.

Positions live in SQL, written in the same transaction as the rows, so on every assignment the
projector seeks to them (Kafka's committed offsets are written too, after each batch, but only so
that the usual lag tools work). A kill -9 at any moment leaves the database at the end of a whole
batch; the restart re-reads from there, and event-id deduplication absorbs any overlap with a
projector that held the partition before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from services.config import ProjectorSettings
from services.kafka_clients import new_consumer
from services.observability import Heartbeat, LagReporter, metrics_server
from services.projector.batches import BatchReport, Projector
from services.readers import SeekToStoredPositions, consumer_lags
from services.signals import stop_on_signals
from services.store.migrate import checked_engine
from services.store.outage import serve_through_outages
from services.store.projection import ProjectionStore
from services.topics import ensure_topics

__all__ = ["projection_store", "run_projector", "serve"]

log = logging.getLogger(__name__)
#: /health says unhealthy when the consumer loop has not turned for this long (a poll takes at
#: most MEDIACDR_PROJECTOR_BATCH_WAIT_MS; a batch's transaction, seconds at worst).
STALE_AFTER_S = 60.0


def projection_store(settings: ProjectorSettings) -> ProjectionStore:
    """The store of ``settings``; raises ``SchemaNotReady`` before a ``mediacdr migrate``."""
    engine = checked_engine(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    return ProjectionStore(engine, recovery_window=timedelta(seconds=settings.recovery_window_s))


async def serve(
    settings: ProjectorSettings,
    stop: asyncio.Event,
    on_batch: Callable[[BatchReport], None] | None = None,
) -> BatchReport:
    """Project until ``stop`` is set; returns the totals. Serves ``/health`` and ``/metrics`` on
    ``MEDIACDR_METRICS_ADDR`` meanwhile (when set): healthy while the consumer loop turns."""
    heartbeat = Heartbeat("consumer", STALE_AFTER_S)
    with metrics_server(settings.metrics_addr, heartbeat.health):
        try:
            return await _project(settings, stop, heartbeat, on_batch)
        finally:
            heartbeat.stop()


async def _project(
    settings: ProjectorSettings,
    stop: asyncio.Event,
    heartbeat: Heartbeat,
    on_batch: Callable[[BatchReport], None] | None,
) -> BatchReport:
    store = projection_store(settings)
    await ensure_topics(settings)
    projector = Projector(settings, store)
    consumer = new_consumer(
        settings,
        group_id=settings.projector_group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.projector_batch_size,
    )
    consumer.subscribe(projector.topics, listener=SeekToStoredPositions(consumer, store.positions))
    await consumer.start()
    totals = BatchReport()
    lag = LagReporter("projector")
    try:
        while not stop.is_set():
            heartbeat.beat()
            batch = await consumer.getmany(
                timeout_ms=settings.projector_batch_wait_ms,
                max_records=settings.projector_batch_size,
            )
            if lag.due():
                lag.set(await consumer_lags(consumer))
            batch = {tp: records for tp, records in batch.items() if records}
            if not batch:
                continue
            report = await asyncio.to_thread(projector.project, batch)
            totals.add(report)
            if on_batch is not None:
                on_batch(report)
            with contextlib.suppress(Exception):  # lag reporting only; SQL is the truth
                await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
    finally:
        lag.clear()
        await consumer.stop()
        store.engine.dispose()
    return totals


def run_projector(settings: ProjectorSettings) -> None:
    """Run until SIGINT or SIGTERM; the batch in progress is finished first."""

    async def main() -> None:
        stop = stop_on_signals()

        def report(batch: BatchReport) -> None:
            log.info(
                "batch: %d read, %d events, %d duplicates, %d facts, skipped %s",
                batch.read,
                batch.events,
                batch.duplicates,
                batch.facts,
                dict(batch.skipped) or "none",
            )

        projection_store(settings).engine.dispose()  # a wrong URL or schema stops it here
        totals = await serve_through_outages(
            lambda inner: serve(settings, inner, report), stop, "projector"
        )
        if totals is not None:
            log.info("stopped after %d records (%d events)", totals.read, totals.events)

    asyncio.run(main())
