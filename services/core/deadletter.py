"""The headers of a dead-lettered record (CONTRACT §11).

The dead letter keeps the rejected record's key, value and headers, so nothing is lost; the
original ``ce_*`` and ``content-type`` headers give way to ours, which describe the dead letter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.core.codec import CE_NAMESPACE, DEADLETTER_TYPE, Headers, ce_headers

__all__ = ["SourcePosition", "dead_letter_headers", "dead_letter_id"]


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a record was read: enough to find it again and to make its dead letter's id."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def dead_letter_id(source: SourcePosition) -> str:
    """Deterministic per source record, so re-processing re-emits the same ``ce_id``."""
    name = f"{DEADLETTER_TYPE}\n{source.topic}/{source.partition}/{source.offset}"
    return str(uuid.uuid5(CE_NAMESPACE, name))


def dead_letter_headers(
    original: Sequence[tuple[str, bytes]],
    *,
    code: str,
    detail: str,
    source: SourcePosition,
    service: str,
    value_is_json: bool,
) -> Headers:
    kept = [(k, v) for k, v in original if not _is_ours(k)]
    ours: Headers = [
        ("error", code.encode()),
        ("error_detail", detail.encode("utf-8", errors="replace")[:4000]),
        ("source_topic", source.topic.encode()),
        ("source_partition", str(source.partition).encode()),
        ("source_offset", str(source.offset).encode()),
    ]
    cloud = ce_headers(
        ce_type=DEADLETTER_TYPE,
        event_id=dead_letter_id(source),
        source=service,
        timestamp_ms=source.timestamp_ms,
        dataschema=None,
        json_content=value_is_json,
    )
    return kept + ours + cloud


def _is_ours(name: str) -> bool:
    return name.startswith("ce_") or name.lower() == "content-type" or name in _ERROR_HEADERS


_ERROR_HEADERS = frozenset(
    {"error", "error_detail", "source_topic", "source_partition", "source_offset"}
)
