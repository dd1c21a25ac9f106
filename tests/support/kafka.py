"""Small real-broker helpers for tests: produce records, collect records by predicate."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from services.ops.tail import TailedRecord, collect

__all__ = ["body", "collect", "headers_of", "produce"]


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
