"""The headers of a dead-lettered record (CONTRACT §11).

The dead letter keeps the rejected record's key, value and headers, so nothing is lost; the
original ``ce_*`` and ``content-type`` headers give way to ours, which describe the dead letter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.core.codec import CE_NAMESPACE, DEADLETTER_TYPE, Headers, ce_headers

__all__ = [
    "MAX_DEAD_LETTER_BYTES",
    "TRUNCATED_HEADER",
    "SourcePosition",
    "dead_letter_headers",
    "dead_letter_id",
    "fit_dead_letter",
]

#: A dead letter stays under the producers' 1 MB request limit whatever was rejected: a record
#: bigger than this keeps its key, headers and value only as far as they fit, in that order.
MAX_DEAD_LETTER_BYTES = 900_000
#: The header of a dead letter that had to be cut: what, and its original size.
TRUNCATED_HEADER = "truncated"
#: Room for our own headers (``error_detail`` is at most 4000 bytes).
_OWN_HEADERS_BYTES = 8_000


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
    {"error", "error_detail", "source_topic", "source_partition", "source_offset", "truncated"}
)


def fit_dead_letter(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]], str | None]:
    """``key``, ``value`` and ``headers`` cut to fit a dead letter, and what was cut with its
    original size (``"value:1048000"``, ``"key:…,headers:2"``), or None when all fits.

    A rejected record cannot be bigger than its topic allows, but its dead letter adds headers:
    without this, a record near the size limit could not be dead-lettered at all."""
    budget = MAX_DEAD_LETTER_BYTES - _OWN_HEADERS_BYTES
    cut = []
    if key is not None and len(key) > budget // 2:
        cut.append(f"key:{len(key)}")
        key = key[: budget // 2]
    budget -= len(key or b"")
    kept: list[tuple[str, bytes]] = []
    for name, header in headers:
        size = len(name.encode("utf-8", "replace")) + len(header)
        if size <= budget // 2:  # half at most: the value comes first
            kept.append((name, header))
            budget -= size
    if value is not None and len(value) > budget:
        cut.append(f"value:{len(value)}")
        value = value[:budget]
    if len(kept) < len(headers):
        cut.append(f"headers:{len(headers) - len(kept)}")
    return key, value, kept, ",".join(cut) or None
