"""The read positions on a worker: the adapter of :mod:`services.detector.positions`.

Every agent of the detector (the two routers and the node agent) passes each batch through
:meth:`ReadPositions.admit` before it processes it, and :meth:`ReadPositions.advance` after its
effects are durable. Around rebalances, :meth:`ReadPositions.start` gives every newly owned
partition a position before Faust resumes the streams, and :meth:`ReadPositions.check` reads
a partition again wherever the group's commit passed its position.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from services.detector.offsets import BrokerOffsets
from services.detector.positions import Rewinds, Verdict, judge, position_key
from services.detector.table_store import write_durably

__all__ = ["REWIND_RETRY_S", "ReadPositions"]

log = logging.getLogger(__name__)
#: a seek back to a read position that has not taken effect after this long is made again
REWIND_RETRY_S = 5.0

Source = tuple[str, int]


class ReadPositions:
    """``table`` is the ``read-positions`` Faust table; ``read_topics`` names the topics whose
    partitions are read with a position (the inputs and the internal topic)."""

    def __init__(
        self,
        app: Any,
        table: MutableMapping[str, Any],
        offsets: BrokerOffsets,
        read_topics: Callable[[], set[str]],
    ) -> None:
        self.app = app
        self.table = table
        self.offsets = offsets
        self.read_topics = read_topics
        #: (topic, partition) → its read position as the broker has acknowledged it: what the
        #: marks and the route pruning go by (the table's own value may be a write in flight)
        self.durable: dict[Source, int] = {}
        self.rewinds = Rewinds(REWIND_RETRY_S)
        self.checked: int | None = None

    def owned(self) -> list[Any]:
        """The partitions this worker owns that an agent reads with a read position."""
        read = self.read_topics()
        return [tp for tp in self.app.consumer.assignment() if tp.topic in read]

    async def admit(self, events: list[Any]) -> tuple[list[Any], dict[Any, int], list[Any]]:
        """The events to process — each the next record of its partition — the read positions
        they lead to, and the replays (processed before: dropped); a gap sends its partition
        back to its position."""
        admitted: list[Any] = []
        positions: dict[Any, int] = {}
        replays: list[Any] = []
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            expected = positions.get(tp, self.table.get(position_key(tp.topic, tp.partition)))
            verdict = judge(offset, expected)
            if verdict is Verdict.GAP and expected is not None:
                if not await self._rewind(tp, expected, offset):
                    continue
            elif verdict is Verdict.REPLAY:
                replays.append(event)
                continue
            self.rewinds.done(position_key(tp.topic, tp.partition))
            admitted.append(event)
            positions[tp] = offset + 1
        return admitted, positions, replays

    async def advance(self, positions: dict[Any, int]) -> None:
        """Record read positions once what they account for is durable; awaited, so that a
        worker giving its partitions away has recorded how far it got."""
        await asyncio.gather(
            *(
                write_durably(
                    self.table, position_key(tp.topic, tp.partition), position, tp.partition
                )
                for tp, position in positions.items()
            )
        )
        for tp, position in positions.items():
            self.durable[(tp.topic, tp.partition)] = position

    async def resumed_at(self, tp: Any) -> int:
        """Where reading of ``tp`` resumed: its durable read position, or — if it could not be
        started — the group's committed offset."""
        position = self.durable.get((tp.topic, tp.partition))
        if position is not None:
            return position
        return await self.offsets.committed((tp.topic, tp.partition))

    async def start(self) -> None:
        """After a rebalance, before Faust resumes the streams: every partition read without a
        position yet starts at the group's committed offset, so that records Faust skips from
        now on show as a gap; and ``durable`` holds what the changelog says of each partition
        newly owned."""
        owned = {(tp.topic, tp.partition): tp for tp in self.owned()}
        durable = self.durable
        for given_away in set(durable) - set(owned):
            del durable[given_away]
        started: dict[Source, int] = {}
        writes = []
        try:
            for source, tp in owned.items():
                if source in durable:
                    continue  # kept through the rebalance
                key = position_key(tp.topic, tp.partition)
                restored = self.table.get(key)
                if restored is not None:
                    durable[source] = restored  # read back from the changelog
                    continue
                committed = await self.offsets.committed(source)
                started[source] = committed
                writes.append(write_durably(self.table, key, committed, tp.partition))
            await asyncio.gather(*writes)
            durable.update(started)
        except Exception:
            log.exception("could not start the read positions; the first records will start them")

    async def check(self) -> None:
        """Once per rebalance, when Faust has sought the partitions to the group's committed
        offsets: wherever the commit passed the read position (records Faust skipped and
        acknowledged, with no later record to reveal the gap), read again from the position."""
        generation = self.app.consumer_generation_id
        recovery = self.app.tables.recovery  # TableManager's
        if generation == self.checked or not recovery.completed.is_set():
            return
        self.checked = generation
        for tp in self.owned():
            position = self.table.get(position_key(tp.topic, tp.partition))
            if position is None:
                continue  # started by its first processed record
            committed = await self.offsets.committed((tp.topic, tp.partition))
            if committed > position:
                log.warning(
                    "the group committed %s up to %d, but records from %d on were not "
                    "processed; reading again from %d",
                    tp,
                    committed,
                    position,
                    position,
                )
                await self.app.consumer.seek(tp, position)

    async def _rewind(self, tp: Any, expected: int, offset: int) -> bool:
        """Records ``expected`` … ``offset - 1`` of ``tp`` were skipped: read them again (True:
        they are gone for good, deleted by retention; process ``offset``)."""
        key = position_key(tp.topic, tp.partition)
        if not self.rewinds.due(key, expected, time.monotonic()):
            return False
        start = (await self.offsets.starts([(tp.topic, tp.partition)]))[(tp.topic, tp.partition)]
        if start > expected:
            log.error(
                "records %d…%d of %s were deleted by retention before this detector read them",
                expected,
                start - 1,
                tp,
            )
            return offset >= start
        log.warning(
            "records %d…%d of %s were skipped (a rebalance); reading again from %d",
            expected,
            offset - 1,
            tp,
            expected,
        )
        await self.app.consumer.seek(tp, expected)
        return False
