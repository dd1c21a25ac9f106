"""Input validation: from the bytes of an input record to a checked JSON object, or a rejection.

The order of the checks fixes which dead-letter code a broken record gets: not JSON →
``invalidJson``; no known ``event`` for the topic → ``unknownEvent``; schema → ``schemaViolation``;
timestamp outside [2000, 2100) → ``timestampOutOfRange``; record key ≠ id → ``keyMismatch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import fastjsonschema

from services.core.codec import decode_json_object
from services.core.errors import KeyMismatch, SchemaViolation, TimestampOutOfRange, UnknownEvent
from services.core.events import LIVENESS_EVENTS, SESSION_EVENTS
from services.core.schemas import compiled_validator

__all__ = ["MAX_TIMESTAMP_MS", "MIN_TIMESTAMP_MS", "InputKind", "ValidInput", "validate_input"]

InputKind = Literal["liveness", "session"]

MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (excluded)
_EVENTS_BY_KIND: dict[InputKind, frozenset[str]] = {
    "liveness": LIVENESS_EVENTS,
    "session": SESSION_EVENTS,
}
_KEY_FIELD: dict[InputKind, str] = {"liveness": "id", "session": "sessionId"}


@dataclass(frozen=True, slots=True)
class ValidInput:
    """A record that passed every check; ``payload`` is the JSON object as received."""

    kind: InputKind
    event: str
    timestamp: int
    key: str
    payload: dict[str, Any]


def validate_input(kind: InputKind, key: bytes | None, raw: bytes | None) -> ValidInput:
    """Check one input record; raises a :class:`~services.core.errors.RejectedInput`."""
    payload = decode_json_object(raw)
    event = payload.get("event")
    if not isinstance(event, str) or event not in _EVENTS_BY_KIND[kind]:
        raise UnknownEvent(f"{event!r} is not a {kind} event")
    try:
        compiled_validator(kind, event)(payload)
    except fastjsonschema.JsonSchemaException as e:
        raise SchemaViolation(f"{event}: {e}") from e
    timestamp = int(payload["timestamp"])
    if not MIN_TIMESTAMP_MS <= timestamp < MAX_TIMESTAMP_MS:
        raise TimestampOutOfRange(f"timestamp {timestamp} is outside [2000-01-01, 2100-01-01)")
    expected = str(payload[_KEY_FIELD[kind]])
    actual = key.decode("utf-8", errors="replace") if key is not None else None
    if actual != expected:
        raise KeyMismatch(f"record key {actual!r} differs from {_KEY_FIELD[kind]} {expected!r}")
    return ValidInput(kind=kind, event=event, timestamp=timestamp, key=expected, payload=payload)
