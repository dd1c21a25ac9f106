"""Small real-broker helpers for tests: produce records, collect records by predicate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from services.ops.tail import TailedRecord, collect

__all__ = ["Record", "body", "collect", "headers_of", "produce", "produce_many"]

#: (topic, key, value, headers, timestamp_ms)
Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]], int | None]


async def produce(
    bootstrap: str, records: Sequence[tuple[str, bytes | None, bytes | None]]
) -> None:
    """Send (topic, key, value) records in order and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def produce_many(
    bootstrap: str, records: Sequence[Record], **options: Any
) -> list[tuple[int, int]]:
    """Send many records with headers and timestamps, pipelined; wait for every acknowledgement.
    Returns the (partition, offset) of each record; ``options`` go to the producer.

    Records of one partition keep their order (one producer, idempotence on)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, **options
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value, key=key, headers=headers, timestamp_ms=ts)
            for topic, key, value, headers, ts in records
        ]
        acknowledged = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return [(meta.partition, meta.offset) for meta in acknowledged]


def body(record: TailedRecord) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(record.value or b"null")
    return parsed


def headers_of(record: TailedRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def event_is(name: str) -> Callable[[TailedRecord], bool]:
    def check(record: TailedRecord) -> bool:
        try:
            return bool(body(record).get("event") == name)
        except (ValueError, AttributeError):
            return False

    return check
