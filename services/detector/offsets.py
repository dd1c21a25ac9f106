"""End offsets straight from the broker, for the marks.

The Faust worker's consumer long-polls (``fetch_max_wait_ms=1500``, hard-coded), so asking it
for end offsets waits behind a fetch; a small consumer of our own, outside any group, answers
each tick in one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["EndOffsets"]


class EndOffsets:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None

    async def fetch(self, partitions: Iterable[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
        consumer = await self._ready()
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        ends = await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _ready(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._consumer
