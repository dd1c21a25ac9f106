"""Input validation: from the bytes of an input record to a checked JSON object, or a rejection.

The order of the checks fixes which dead-letter code a broken record gets: over 256 KiB →
``schemaViolation``; not JSON → ``invalidJson``; no known ``event`` for the topic →
``unknownEvent``; schema → ``schemaViolation``; timestamp outside [2000, 2100) →
``timestampOutOfRange``; record key ≠ id → ``keyMismatch``.

Stricter than the schemas alone, so that whatever is accepted can be written out and stored:
integer fields must be JSON integers (not ``1.7e12``) within 64 bits (``duration``: 32 bits, as
in SQL), and ``startTime`` lies in the timestamp range too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import fastjsonschema

from services.core.codec import decode_json_object
from services.core.errors import KeyMismatch, SchemaViolation, TimestampOutOfRange, UnknownEvent
from services.core.events import LIVENESS_EVENTS, SESSION_EVENTS
from services.core.schemas import compiled_validator, load_schema

__all__ = [
    "MAX_TIMESTAMP_MS",
    "MAX_VALUE_BYTES",
    "MIN_TIMESTAMP_MS",
    "InputKind",
    "ValidInput",
    "validate_input",
]

InputKind = Literal["liveness", "session"]

#: Input values larger than this are refused: what is accepted must fit every output record
#: (the internal envelope escapes the value, up to twice its size) under Kafka's 1 MB.
MAX_VALUE_BYTES = 256 * 1024
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (excluded)
_EVENTS_BY_KIND: dict[InputKind, frozenset[str]] = {
    "liveness": LIVENESS_EVENTS,
    "session": SESSION_EVENTS,
}
_KEY_FIELD: dict[InputKind, str] = {"liveness": "id", "session": "sessionId"}
#: Instants (epoch ms) held to the timestamp range; ``startTime`` becomes a SQL timestamp.
_TIMESTAMP_FIELDS = ("timestamp", "startTime")
_INT64 = (-(2**63), 2**63)
#: Integer fields narrower than 64 bits in SQL (whole seconds in an INTEGER column).
_INTEGER_RANGES = {"duration": (-(2**31), 2**31)}


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
    if raw is not None and len(raw) > MAX_VALUE_BYTES:
        raise SchemaViolation(f"the value has {len(raw)} bytes, more than {MAX_VALUE_BYTES}")
    payload = decode_json_object(raw)
    event = payload.get("event")
    if not isinstance(event, str) or event not in _EVENTS_BY_KIND[kind]:
        raise UnknownEvent(f"{event!r} is not a {kind} event")
    try:
        compiled_validator(kind, event)(payload)
    except fastjsonschema.JsonSchemaException as e:
        raise SchemaViolation(f"{event}: {e}") from e
    _check_integers(kind, event, payload)
    for name in _TIMESTAMP_FIELDS:
        stamp = payload.get(name)
        if stamp is not None and not MIN_TIMESTAMP_MS <= stamp < MAX_TIMESTAMP_MS:
            raise TimestampOutOfRange(f"{name} {stamp} is outside [2000-01-01, 2100-01-01)")
    timestamp: int = payload["timestamp"]
    expected = str(payload[_KEY_FIELD[kind]])
    actual = key.decode("utf-8", errors="replace") if key is not None else None
    if actual != expected:
        raise KeyMismatch(f"record key {actual!r} differs from {_KEY_FIELD[kind]} {expected!r}")
    return ValidInput(kind=kind, event=event, timestamp=timestamp, key=expected, payload=payload)


def _check_integers(kind: InputKind, event: str, payload: dict[str, Any]) -> None:
    """JSON Schema counts ``1.7e12`` as an integer; the wire (and every output) does not, and an
    integer must fit the SQL column it ends in."""
    for name in _integer_fields(kind, event):
        value = payload.get(name)
        if value is None:
            continue
        if not isinstance(value, int):
            raise SchemaViolation(f"{event}: data.{name} must be an integer, not {value!r}")
        low, high = _INTEGER_RANGES.get(name, _INT64)
        if name not in _TIMESTAMP_FIELDS and not low <= value < high:
            raise SchemaViolation(f"{event}: data.{name} {value} is outside [{low}, {high})")


@cache
def _integer_fields(kind: InputKind, event: str) -> tuple[str, ...]:
    properties = load_schema(kind, event)["properties"]
    return tuple(name for name, spec in properties.items() if spec.get("type") == "integer")
