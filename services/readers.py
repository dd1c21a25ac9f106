"""Kafka consumers: readers by explicit assignment (tail, export, rebuild, lag), and the
rebalance listener of the group members that keep their positions in SQL.

Always ``auto_offset_reset="earliest"`` and no group: aiokafka starts resetting a freshly assigned
partition with the reset policy at once, and with the default ("latest") a ``seek_to_beginning``
that follows can race a long-poll fetch at the end of the log and stall reading for seconds (seen
on rebuild). Seeking explicitly from "earliest" has no such race.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from services.kafka_clients import Connection, new_consumer

__all__ = ["SeekToStoredPositions", "consumer_lags", "started_reader"]

log = logging.getLogger(__name__)


@asynccontextmanager
async def started_reader(kafka: Connection, **options: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a group, stopped on exit (also when starting fails)."""
    consumer = new_consumer(
        kafka,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


class SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """On every assignment, seek each partition to the position stored in SQL (or its start).

    ``positions`` is a blocking read of the SQL positions; it runs in a worker thread.
    """

    def __init__(
        self, consumer: AIOKafkaConsumer, positions: Callable[[], dict[tuple[str, int], int]]
    ) -> None:
        self.consumer, self.positions = consumer, positions

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        stored = await asyncio.to_thread(self.positions)
        fresh = []
        for tp in assigned:
            position = stored.get((tp.topic, tp.partition))
            if position is None:
                fresh.append(tp)
            else:
                self.consumer.seek(tp, position)
        if fresh:
            await self.consumer.seek_to_beginning(*fresh)
        log.info("assigned %d partitions (%d never consumed)", len(assigned), len(fresh))


async def consumer_lags(consumer: AIOKafkaConsumer) -> dict[tuple[str, int], int]:
    """Lag of every assigned partition whose end is known: the highwater of the latest fetch
    response − the consumer's position. Costs no request; partitions not fetched yet are left
    out."""
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = await asyncio.wait_for(consumer.position(tp), timeout=0.1)
        except Exception:  # revoked meanwhile, or the position is being reset: next time
            continue
        lags[(tp.topic, tp.partition)] = max(0, int(highwater) - int(position))
    return lags
