"""D11 on a real broker: what an empty set of partitions means to aiokafka's fetcher, and
that the detector's :class:`FetchSet` means "none" where a plain empty set means "all"."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.config import KafkaSettings
from services.detector.fetching import FetchSet
from services.topics import TopicSpec, ensure_topics
from tests.support.kafka import produce

RECORDS = 5


async def _drained(bootstrap: str, partitions: set[TopicPartition]) -> tuple[int, int]:
    """Buffer a topic's records in aiokafka, then ask its fetcher for the records of
    ``partitions``, the way Faust's consumer thread does. Returns (records handed over,
    position after)."""
    topic = f"fetching.{uuid.uuid4().hex[:8]}"
    await ensure_topics(KafkaSettings(kafka_bootstrap=bootstrap), [TopicSpec(topic, 1, {})])
    await produce(bootstrap, [(topic, None, b"%d" % i) for i in range(RECORDS)])
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        fetcher = consumer._fetcher

        async def buffered() -> None:  # the background routine fetches them
            while tp not in fetcher._records:
                await fetcher._create_fetch_waiter()

        await asyncio.wait_for(buffered(), timeout=30)
        handed = await fetcher.fetched_records(partitions, timeout=0.5)
        return sum(len(records) for records in handed.values()), await consumer.position(tp)
    finally:
        await consumer.stop()


def test_an_empty_plain_set_takes_every_buffered_record(kafka_bootstrap: str) -> None:
    """The premise of the fix: if aiokafka stops reading an empty set as "all", this fails
    and ``services/detector/fetching.py`` can go."""
    assert asyncio.run(_drained(kafka_bootstrap, set())) == (RECORDS, RECORDS)


def test_an_empty_fetch_set_takes_nothing_and_consumes_nothing(kafka_bootstrap: str) -> None:
    assert asyncio.run(_drained(kafka_bootstrap, FetchSet())) == (0, 0)
