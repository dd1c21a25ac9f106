"""`mediacdr rebuild`: replay the CDR and node-facts topics from the start into the projection.

The same ``Projector`` as the live service, reading every partition from its first offset up to
the end offsets seen at the start. Webhook tables are left alone. The consumed positions are
stored as it goes, so a projector started afterwards continues where the rebuild stopped. Each
batch is parsed while the one before it is written (in a worker thread), so the database's work
and ours overlap; batches are still written one at a time, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from services.config import ProjectorSettings
from services.core.errors import MediaCdrError
from services.ops.tail import topic_partitions
from services.projector.batches import BatchReport, ParsedBatch, Projector
from services.projector.service import projection_store
from services.readers import started_reader

__all__ = ["NotEmpty", "RebuildReport", "rebuild"]


class NotEmpty(MediaCdrError):
    """The database already holds a projection and the caller did not ask to replace it."""


@dataclass(frozen=True)
class RebuildReport:
    total: int
    totals: BatchReport


async def rebuild(
    settings: ProjectorSettings,
    *,
    replace: bool = False,
    on_total: Callable[[int], None] = lambda _n: None,
    on_batch: Callable[[BatchReport], None] = lambda _b: None,
) -> RebuildReport:
    store = projection_store(settings)
    try:
        occupied = not store.is_empty()
        if occupied and not replace:
            raise NotEmpty(
                "the database already holds a projection; stop the projector and run "
                "`mediacdr rebuild --replace` to empty it (webhook tables are kept)"
            )
        projector = Projector(settings, store)
        async with started_reader(
            settings, max_poll_records=settings.projector_batch_size
        ) as consumer:
            deadline = asyncio.get_running_loop().time() + 30
            tps = [
                tp
                for topic in projector.topics
                for tp in await topic_partitions(settings, topic, deadline)
            ]
            consumer.assign(tps)
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            if occupied:  # only once the topics are known to be readable
                store.reset()
            for tp in tps:
                consumer.seek(tp, starts[tp])
            total = sum(ends[tp] - starts[tp] for tp in tps)
            on_total(total)
            totals = BatchReport()

            def written(report: BatchReport) -> None:
                totals.add(report)
                on_batch(report)

            remaining = {tp for tp in tps if ends[tp] > starts[tp]}
            async with BatchWriter(projector.apply, written) as writer:
                while remaining:
                    batch = await consumer.getmany(
                        *remaining, timeout_ms=1000, max_records=settings.projector_batch_size
                    )
                    wanted = {
                        tp: [r for r in records if r.offset < ends[tp]]
                        for tp, records in batch.items()
                    }
                    wanted = {tp: records for tp, records in wanted.items() if records}
                    if wanted:
                        await writer.write(projector.parse(wanted))
                    for tp, records in batch.items():
                        if records and records[-1].offset + 1 >= ends[tp]:
                            remaining.discard(tp)
        return RebuildReport(total, totals)
    finally:
        store.engine.dispose()


class BatchWriter:
    """Writes parsed batches one at a time in a worker thread, in order, while the caller reads
    and parses the next one: parsing overlaps the database's work instead of waiting for it.
    Leaving the block waits for the last write (and raises its error, if any)."""

    def __init__(
        self,
        apply: Callable[[ParsedBatch], BatchReport],
        written: Callable[[BatchReport], None],
    ) -> None:
        self.apply, self.written = apply, written
        self.pending: asyncio.Future[BatchReport] | None = None

    async def write(self, parsed: ParsedBatch) -> None:
        await self._finish()
        self.pending = asyncio.ensure_future(asyncio.to_thread(self.apply, parsed))

    async def _finish(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            self.written(await pending)

    async def __aenter__(self) -> BatchWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            await self._finish()
        elif self.pending is not None:  # let the thread end before the engine is disposed
            await asyncio.wait([self.pending])
            if not self.pending.cancelled():
                self.pending.exception()  # retrieved: the error already raised is the one told
