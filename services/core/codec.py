"""Bytes ⇄ JSON, canonical JSON and the CloudEvents headers every record we write carries.

Pure functions: the detector, projector, webhooks service and api all encode through here, so a
record's ``ce_id`` is the same whoever computes it (CONTRACT §2).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from services.core.errors import InvalidJson

__all__ = [
    "CE_NAMESPACE",
    "CE_SPECVERSION",
    "DEADLETTER_TYPE",
    "Headers",
    "canonical_json",
    "ce_headers",
    "ce_id",
    "ce_time",
    "decode_json_object",
    "encode_value",
    "header_value",
]

Headers = list[tuple[str, bytes]]

#: The fixed project namespace of every ``ce_id`` (uuid5 of the URL namespace and "urn:mediacdr").
CE_NAMESPACE = uuid.UUID("a8d249ec-17db-56ff-8b56-07430b2ee02d")
CE_SPECVERSION = "1.0"
DEADLETTER_TYPE = "mediacdr.deadletter"
_MAX_CE_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
#: Keys left out of the ``ce_id`` input, per event type (a notice's suggestion is best effort).
_ID_EXCLUDED_KEYS: Mapping[str, frozenset[str]] = {
    "sessionDisconnected": frozenset({"suggestedMediaNodeId"}),
}


def canonical_json(value: Mapping[str, Any]) -> str:
    """Keys sorted, no spaces, UTF-8 kept as is: the form hashed into ``ce_id``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode_value(value: Mapping[str, Any]) -> bytes:
    """The bytes of a record value: compact JSON in the key order the builder chose."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_json_object(raw: bytes | None) -> dict[str, Any]:
    """Parse a record value that must be one UTF-8 JSON object.

    Refused as well, because no output could carry them: ``NaN``/``Infinity`` and numbers too
    large for a double (``1e400``), ``\\udXXX`` escapes of lone surrogates (not Unicode
    text, so not encodable as UTF-8), and NUL characters (PostgreSQL text cannot hold them, so
    the projection could not store the record).
    """
    if raw is None:
        raise InvalidJson("the record has no value")
    try:
        text = raw.decode("utf-8")
        value = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InvalidJson(f"not UTF-8 JSON: {e}") from e
    if not isinstance(value, dict):
        raise InvalidJson(f"expected a JSON object, got {type(value).__name__}")
    if _deeper_than(value, MAX_DEPTH):
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text) and not _encodable(value):
        raise InvalidJson("not UTF-8 JSON: a string holds a lone surrogate (\\udXXX)")
    if _NUL_ESCAPE.search(text) and _holds_nul(value):
        raise InvalidJson("a string holds a NUL character (\\u0000), which SQL text refuses")
    return value


_NUL_ESCAPE = re.compile(r"\\u0000")
#: No OpenVidu event nests beyond a few levels; a fixed bound makes the answer the same in every
#: process (the parser's own limit is the interpreter's recursion limit, which varies).
MAX_DEPTH = 64


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is out of range for a double")
    return number


#: One decoder for every record: ``json.loads`` with options builds a new one per call, which
#: was a tenth of the projector's time.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _encodable(value: Any) -> bool:
    try:
        encode_value(value)
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def ce_id(ce_type: str, value: Mapping[str, Any]) -> str:
    """UUIDv5 of ``ce_type + "\\n" + canonical JSON``: an exact repeat gets the same id."""
    excluded = _ID_EXCLUDED_KEYS.get(ce_type, frozenset())
    hashed = {k: v for k, v in value.items() if k not in excluded}
    return str(uuid.uuid5(CE_NAMESPACE, ce_type + "\n" + canonical_json(hashed)))


def ce_time(timestamp_ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` in UTC."""
    clamped = min(max(timestamp_ms, 0), _MAX_CE_TIME_MS)  # a dead letter may carry any stamp
    moment = datetime.fromtimestamp(clamped / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{clamped % 1000:03d}Z"


def ce_headers(
    *,
    ce_type: str,
    event_id: str,
    source: str,
    timestamp_ms: int,
    dataschema: str | None,
    media_node_id: str | None = None,
    incident_id: str | None = None,
    json_content: bool = True,
) -> Headers:
    """The CloudEvents Kafka binding headers (binary mode) of CONTRACT §2."""
    headers: Headers = [
        ("ce_specversion", CE_SPECVERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_source", source.encode()),
        ("ce_time", ce_time(timestamp_ms).encode()),
    ]
    if dataschema is not None:
        headers.append(("ce_dataschema", dataschema.encode()))
    if json_content:
        headers.append(("content-type", b"application/json"))
    if media_node_id is not None:
        headers.append(("ce_medianodeid", media_node_id.encode()))
    if incident_id is not None:
        headers.append(("ce_incidentid", incident_id.encode()))
    return headers


def header_value(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found: str | None = None
    for key, value in headers:
        if key == name:
            found = value.decode("utf-8", errors="replace")
    return found
