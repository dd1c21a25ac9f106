"""End offsets and committed offsets straight from the broker, for the marks.

The Faust worker's consumer long-polls (``fetch_max_wait_ms=1500``, hard-coded), so asking it
for end offsets waits behind a fetch, and it does not reliably know the committed offset of a
partition it was just given. A small consumer of our own, outside any group membership (it
never subscribes), answers each tick in one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.kafka_clients import Connection, new_consumer

__all__ = ["BrokerOffsets"]

Partition = tuple[str, int]


class BrokerOffsets:
    def __init__(self, kafka: Connection, group_id: str) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self._consumer: AIOKafkaConsumer | None = None

    async def ends(self, partitions: Iterable[Partition]) -> Mapping[Partition, int]:
        consumer = await self._ready()
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        ends = await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    async def starts(self, partitions: Iterable[Partition]) -> Mapping[Partition, int]:
        """The log start offsets: records before them were deleted (retention)."""
        consumer = await self._ready()
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        starts = await consumer.beginning_offsets(tps)
        return {(tp.topic, tp.partition): int(offset) for tp, offset in starts.items()}

    async def committed(self, partition: Partition) -> int:
        """The group's committed offset (0 when there is none)."""
        consumer = await self._ready()
        offset = await consumer.committed(TopicPartition(*partition))
        return int(offset) if offset is not None and offset >= 0 else 0

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _ready(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = new_consumer(
                self.kafka,
                group_id=self.group_id,
                enable_auto_commit=False,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer
