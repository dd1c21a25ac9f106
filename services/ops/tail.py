"""Reading a topic from the start, for people: `mediacdr tail TOPIC`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from services.kafka_clients import Connection, new_admin, new_consumer

__all__ = ["TailedRecord", "collect", "describe", "read_topic", "topic_partitions"]


@dataclass(frozen=True, slots=True)
class TailedRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, record: Any) -> TailedRecord:
        """The fields kept of a record as aiokafka's consumer returns it."""
        return cls(
            record.partition,
            record.offset,
            record.timestamp,
            record.key,
            record.value,
            list(record.headers),
        )


async def read_topic(
    kafka: Connection, topic: str, idle_ms: int = 1000
) -> AsyncIterator[TailedRecord]:
    """Every record now on ``topic`` (all partitions, from the start), then stop."""
    consumer = new_consumer(
        kafka, enable_auto_commit=False, auto_offset_reset="earliest"
    )  # "earliest": see services/readers.py
    await consumer.start()
    try:
        try:
            tps = await topic_partitions(kafka, topic, asyncio.get_running_loop().time())
        except TimeoutError:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=idle_ms)
            if not batch:
                break
            for tp, records in batch.items():
                for r in records:
                    yield TailedRecord.of(r)
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def collect(
    kafka: Connection,
    topic: str,
    *,
    count: int,
    timeout_s: float,
    predicate: Callable[[TailedRecord], bool] = lambda _r: True,
) -> list[TailedRecord]:
    """Read ``topic`` from the start until ``count`` records match ``predicate``.

    Returns the matching records; raises ``TimeoutError`` (with what was seen) when the deadline
    passes first. Waits on the broker (long poll), never on a sleep.
    """
    consumer = new_consumer(
        kafka, enable_auto_commit=False, auto_offset_reset="earliest"
    )  # "earliest": see services/readers.py
    await consumer.start()
    matched: list[TailedRecord] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        tps = await topic_partitions(kafka, topic, deadline)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(matched) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"{len(matched)} of {count} records on {topic}")
            batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for records in batch.values():
                for r in records:
                    record = TailedRecord.of(r)
                    if predicate(record):
                        matched.append(record)
    finally:
        await consumer.stop()
    return matched


async def topic_partitions(kafka: Connection, topic: str, deadline: float) -> list[TopicPartition]:
    """The topic's partitions, waiting for a topic that is being created."""
    loop = asyncio.get_running_loop()
    admin = new_admin(kafka)
    await admin.start()
    try:
        while True:
            described = await admin.describe_topics([topic])
            partitions = [p["partition"] for d in described for p in d.get("partitions") or []]
            if partitions and described[0].get("error_code", 0) == 0:
                return [TopicPartition(topic, p) for p in sorted(partitions)]
            if loop.time() > deadline:
                raise TimeoutError(f"topic {topic} does not exist")
            await asyncio.sleep(0.2)  # metadata has no change notification to await
    finally:
        await admin.close()


def describe(record: TailedRecord, *, brief: bool = False) -> str:
    """A human line (or two) for one record."""
    key = record.key.decode("utf-8", "replace") if record.key is not None else None
    value = record.value.decode("utf-8", "replace") if record.value is not None else None
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
    where = f"[{record.partition}:{record.offset}]"
    if not brief:
        return f"{where} key={key} value={value}\n    headers={json.dumps(headers)}"
    try:
        body = json.loads(value or "null")
    except ValueError:
        body = None
    event = body.get("event") if isinstance(body, dict) else None
    label = event or headers.get("error") or "?"
    extras = [f"{k}={body[k]}" for k in _BRIEF_FIELDS if isinstance(body, dict) and k in body]
    if "ce_incidentid" in headers:
        extras.append(f"incident={headers['ce_incidentid']}")
    if "error" in headers:
        extras.append(f"error={headers['error']}")
    return f"{where} {label:<26} key={key} {' '.join(extras)}"


_BRIEF_FIELDS = ("connectionId", "connection", "receivingFrom", "reason", "outcome", "status")
