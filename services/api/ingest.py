"""Ingest (CONTRACT §14): OpenVidu webhook bodies and liveness events → the input topics.

A body is checked exactly as the detector will check it (the published input schemas), plus the
hosting node for session events and a ±24 h clock check; only then is it published, and the
answer (200) waits for Kafka's acknowledgement.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Literal

from services.core.codec import decode_json_object
from services.core.errors import RejectedInput
from services.core.events import LIVENESS_EVENTS, SESSION_EVENTS
from services.core.validation import validate_input

__all__ = ["OWN_EVENTS", "Accepted", "Counted", "Refused", "check_liveness", "check_openvidu"]

#: Events OpenVidu Pro writes that mediacdr produces itself: counted, never republished.
OWN_EVENTS = frozenset({"nodeCrashed", "nodeRecovered", "autoscaling"})


@dataclass(frozen=True, slots=True)
class Accepted:
    role: Literal["sessions", "liveness"]
    event: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Counted:
    event: str


@dataclass(frozen=True, slots=True)
class Refused:
    code: str
    detail: str


def check_openvidu(
    raw: bytes, node: str | None, max_skew_s: int, now_ms: int | None = None
) -> Accepted | Counted | Refused:
    """An OpenVidu webhook body; ``node`` hosts its session when the body names none."""
    try:
        body = decode_json_object(raw)
    except RejectedInput as e:
        return Refused(e.code, e.detail)
    event = body.get("event")
    if not isinstance(event, str):  # a list or object is not an event name (nor hashable)
        return Refused("unknownEvent", f"{event!r} is not an event name")
    if event in OWN_EVENTS:
        return Counted(str(event))
    if event == "mediaNodeStatusChanged":
        return _checked("liveness", body, max_skew_s, now_ms)
    if event in SESSION_EVENTS and "mediaNodeId" not in body:
        if node is None:
            return Refused(
                "missingMediaNode",
                "the body names no media node: pass ?mediaNodeId= or set "
                "MEDIACDR_INGEST_DEFAULT_NODE",
            )
        body["mediaNodeId"] = node
    return _checked("sessions", body, max_skew_s, now_ms)


def check_liveness(raw: bytes, max_skew_s: int, now_ms: int | None = None) -> Accepted | Refused:
    try:
        body = decode_json_object(raw)
    except RejectedInput as e:
        return Refused(e.code, e.detail)
    checked = _checked("liveness", body, max_skew_s, now_ms)
    assert not isinstance(checked, Counted)
    return checked


def _checked(
    role: Literal["sessions", "liveness"],
    body: dict[str, object],
    max_skew_s: int,
    now_ms: int | None,
) -> Accepted | Refused:
    kind: Literal["session", "liveness"] = "session" if role == "sessions" else "liveness"
    known = SESSION_EVENTS if kind == "session" else LIVENESS_EVENTS
    event = body.get("event")
    if not isinstance(event, str) or event not in known:
        return Refused("unknownEvent", f"{event!r} is not a {kind} event")
    key_field = "sessionId" if kind == "session" else "id"
    key = body.get(key_field)
    value = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        valid = validate_input(kind, str(key).encode() if key is not None else None, value)
    except RejectedInput as e:
        return Refused(e.code, e.detail)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    if abs(valid.timestamp - now) > max_skew_s * 1000:
        return Refused(
            "timestampOutOfRange",
            f"timestamp {valid.timestamp} is more than {max_skew_s} s from the server clock",
        )
    return Accepted(role, valid.event, valid.key.encode(), value)
