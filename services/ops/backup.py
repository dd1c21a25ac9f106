"""`mediacdr topics backup` / `restore`: a topic to a file and back, record for record.

For the topics kept forever (the CDR and the node facts), from which the SQL projection is
rebuilt. Unlike `cdr export` (OpenVidu's file format, bodies only), a backup keeps what a rebuild
and the webhooks need: per record its partition, key, value, headers (``ce_id``,
``ce_incidentid``, …) and timestamp.

The file is JSON Lines: a first line ``{"format": "mediacdr-topic-backup", "version": 1, "topic":
…, "partitions": …}``, then one record per line ``{"p": partition, "o": offset, "t": timestamp
ms, "k": key, "v": value, "h": [[name, value], …]}`` with bytes in base64 (``null`` for none), in
offset order per partition. A restore writes each record to the same partition, with the same
key, value, headers and timestamp, in the same order; offsets are the new topic's own. It only
writes into an empty topic with the same partition count: partitions carry the order. Restoring
a backup that starts at offset 0 (a topic kept forever) gives every record its old offset, so the
positions stored in SQL stay valid; the report says when that was not so. A restore may redact
personal data on the way (:mod:`services.core.redaction`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO, Any

from aiokafka import TopicPartition

from services.core import codec
from services.core.errors import ConfigurationError, InvalidJson
from services.core.redaction import Redaction
from services.kafka_clients import Connection, new_producer
from services.ops.tail import TailedRecord, topic_partitions
from services.readers import started_reader

__all__ = [
    "BACKUP_FORMAT",
    "RestoreReport",
    "backup_topic",
    "parse_record_line",
    "read_backup",
    "record_line",
    "redacting",
    "restore_topic",
]

BACKUP_FORMAT = "mediacdr-topic-backup"
_VERSION = 1


def record_line(record: TailedRecord) -> str:
    """One record of a backup file (without the line end)."""
    doc = {
        "p": record.partition,
        "o": record.offset,
        "t": record.timestamp_ms,
        "k": _b64(record.key),
        "v": _b64(record.value),
        "h": [[name, _b64(value)] for name, value in record.headers],
    }
    return json.dumps(doc, separators=(",", ":"))


def parse_record_line(line: str) -> TailedRecord:
    """The record of one line of a backup file (:func:`record_line` read back)."""
    doc = json.loads(line)
    headers = [(str(name), _unb64(value) or b"") for name, value in doc["h"]]
    return TailedRecord(
        int(doc["p"]), int(doc["o"]), int(doc["t"]), _unb64(doc["k"]), _unb64(doc["v"]), headers
    )


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


async def backup_topic(
    kafka: Connection,
    topic: str,
    out: IO[str],
    on_read: Callable[[int], None] = lambda _n: None,
) -> int:
    """Write every record now on ``topic`` (up to the end offsets read at the start) to ``out``;
    returns how many."""
    async with started_reader(kafka) as consumer:
        tps = await topic_partitions(kafka, topic, _deadline())
        header = {"format": BACKUP_FORMAT, "version": _VERSION, "topic": topic}
        out.write(json.dumps(header | {"partitions": len(tps)}) + "\n")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        written = 0
        for tp in sorted(tps, key=lambda tp: tp.partition):  # one partition at a time: in order
            written += await _copy_partition(consumer, tp, ends[tp], out)
            on_read(written)
    return written


async def _copy_partition(consumer: Any, tp: TopicPartition, end: int, out: IO[str]) -> int:
    written = 0
    position = await consumer.position(tp)
    while position < end:
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
        for r in batch.get(tp, []):
            if r.offset >= end:
                break
            out.write(record_line(TailedRecord.of(r)) + "\n")
            written += 1
        position = await consumer.position(tp)
    return written


def read_backup(lines: Iterable[str]) -> tuple[dict[str, Any], Iterator[TailedRecord]]:
    """The header of a backup file and its records (lazily)."""
    it = iter(lines)
    header = json.loads(next(it))
    if header.get("format") != BACKUP_FORMAT or header.get("version") != _VERSION:
        raise ConfigurationError(f"not a {BACKUP_FORMAT} v{_VERSION} file: {header}")
    return header, (parse_record_line(line) for line in it if line.strip())


@dataclass(frozen=True, slots=True)
class RestoreReport:
    written: int
    redacted: int
    #: records whose new offset differs from the one backed up (a backup that did not start at
    #: offset 0): positions stored elsewhere (the projector's, the webhooks') no longer match
    moved: int


def redacting(redaction: Redaction) -> Callable[[TailedRecord], TailedRecord | None]:
    """A ``transform`` for :func:`restore_topic`: the record with its personal fields blanked,
    or ``None`` when it keeps them. Its ``ce_id`` header stays: it is the same event."""

    def transform(record: TailedRecord) -> TailedRecord | None:
        try:
            body = codec.decode_json_object(record.value)
        except InvalidJson:
            return None
        redacted = redaction.redact(body)
        if redacted is None:
            return None
        return replace(record, value=codec.encode_value(redacted))

    return transform


async def restore_topic(
    kafka: Connection,
    topic: str,
    lines: Iterable[str],
    on_written: Callable[[int], None] = lambda _n: None,
    transform: Callable[[TailedRecord], TailedRecord | None] = lambda _r: None,
) -> RestoreReport:
    """Write a backup's records into ``topic`` (empty, same partition count); ``transform`` may
    replace a record (``None``: keep it)."""
    header, records = read_backup(lines)
    tps = await topic_partitions(kafka, topic, _deadline())
    if len(tps) != header["partitions"]:
        raise ConfigurationError(
            f"{topic} has {len(tps)} partitions, the backup of {header['topic']} has "
            f"{header['partitions']}: create it with MEDIACDR_PARTITIONS={header['partitions']}"
        )
    async with started_reader(kafka) as consumer:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
    if any(ends[tp] > starts[tp] for tp in tps):
        raise ConfigurationError(f"{topic} is not empty; a restore only writes into an empty topic")
    producer = new_producer(kafka, acks="all", enable_idempotence=True, linger_ms=20)
    await producer.start()
    written = redacted = moved = 0
    try:
        pending: list[tuple[int, Any]] = []
        for original in records:
            record = transform(original) or original
            redacted += record is not original
            sent = await producer.send(
                topic,
                record.value,
                key=record.key,
                partition=record.partition,
                timestamp_ms=record.timestamp_ms,
                headers=record.headers,
            )
            pending.append((record.offset, sent))
            written += 1
            if len(pending) >= 10_000:
                moved += await _settle(pending)
                on_written(written)
        moved += await _settle(pending)
        on_written(written)
    finally:
        await producer.stop()
    return RestoreReport(written, redacted, moved)


async def _settle(pending: list[tuple[int, Any]]) -> int:
    """Wait for the sends; how many landed at another offset than the one backed up."""
    moved = 0
    for offset, future in pending:
        metadata = await future
        moved += metadata.offset != offset
    pending.clear()
    return moved


def _deadline(seconds: float = 30.0) -> float:
    """When to give up waiting for a topic's metadata."""
    return asyncio.get_running_loop().time() + seconds
