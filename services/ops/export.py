"""`mediacdr cdr export`: the CDR topic in OpenVidu's CDR file format (CONTRACT §7).

JSON Lines, one event per line with the event name as the single root key and the webhook body
minus ``event`` beneath it (reference §1.1), ordered by (timestamp, partition, offset), repeats of
a ``ce_id`` dropped. The Kafka record timestamp is the event timestamp, so a start time seeks each
partition straight to its first record at or after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from services.core import codec
from services.core.errors import InvalidJson
from services.kafka_clients import Connection
from services.ops.tail import topic_partitions
from services.readers import started_reader

__all__ = ["ExportReport", "cdr_line", "export_cdr"]


@dataclass(frozen=True)
class ExportReport:
    written: int
    duplicates: int
    unreadable: int


def cdr_line(value: bytes) -> tuple[str, str]:
    """``(ce_id fallback, line)`` for one CDR value: ``{"<event>": {...body without event}}``."""
    body = codec.decode_json_object(value)
    event = body.pop("event")
    if not isinstance(event, str):
        raise InvalidJson("the value has no event name")
    line = json.dumps({event: body}, ensure_ascii=False, separators=(",", ":"))
    return codec.ce_id(event, {"event": event, **body}), line


async def export_cdr(
    kafka: Connection,
    topic: str,
    out: IO[str],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    on_total: Callable[[int], None] = lambda _n: None,
    on_read: Callable[[int], None] = lambda _n: None,
) -> ExportReport:
    """Write the records stamped in ``[since_ms, until_ms)`` to ``out``."""
    deadline = asyncio.get_running_loop().time() + 30
    tps = await topic_partitions(kafka, topic, deadline)
    rows: list[tuple[int, int, int, str, str]] = []
    unreadable = 0
    async with started_reader(kafka) as consumer:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        if since_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            starts = {tp: found[tp].offset if found[tp] else ends[tp] for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        on_total(sum(ends[tp] - starts[tp] for tp in tps))
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, records in batch.items():
                kept = [r for r in records if r.offset < ends[tp]]
                for r in kept:
                    in_range = (since_ms is None or r.timestamp >= since_ms) and (
                        until_ms is None or r.timestamp < until_ms
                    )
                    if not in_range:
                        continue
                    try:
                        fallback_id, line = cdr_line(r.value or b"")
                    except (InvalidJson, KeyError):
                        unreadable += 1
                        continue
                    headers = dict(r.headers)
                    ce_id = headers.get("ce_id", b"").decode() or fallback_id
                    rows.append((r.timestamp, r.partition, r.offset, ce_id, line))
                on_read(len(kept))
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    rows.sort()
    seen: set[str] = set()
    written = 0
    for _ts, _partition, _offset, ce_id, line in rows:
        if ce_id in seen:
            continue
        seen.add(ce_id)
        out.write(line + "\n")
        written += 1
    return ExportReport(written, len(rows) - written, unreadable)
