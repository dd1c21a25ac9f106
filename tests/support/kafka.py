"""Small real-broker helpers for tests: produce records, collect records by predicate."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

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


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """The consumer group's state and member count, as its coordinator says."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        _error, _group, state, _type, _protocol, members, *_ = response.groups[0]
        return str(state), len(members)
    except GroupCoordinatorNotAvailableError:  # the group has not formed yet
        return "", 0
    finally:
        await admin.close()


def wait_for_stable_group(bootstrap: str, group: str, members: int, timeout: float = 120) -> None:
    """Until ``group`` is Stable with ``members`` members (each has its partitions)."""
    deadline = time.monotonic() + timeout
    seen: tuple[str, int] = ("", 0)
    while time.monotonic() < deadline:
        seen = asyncio.run(group_members(bootstrap, group))
        if seen == ("Stable", members):
            return
        time.sleep(0.5)  # polling the coordinator: there is no event to await
    raise AssertionError(f"group {group} not stable with {members} members: {seen}")
