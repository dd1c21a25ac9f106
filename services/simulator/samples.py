"""A handful of sample records for `make up`: a valid story and three kinds of bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["SampleRecord", "sample_records"]


@dataclass(frozen=True, slots=True)
class SampleRecord:
    topic_role: str  # "liveness" | "sessions"
    key: bytes
    value: bytes
    note: str


def _json(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sample_records(now_ms: int, node: str = "media_sample-1") -> list[SampleRecord]:
    """Records stamped from ``now_ms`` on: a node, a session with one participant, bad input."""
    session = f"ses_sample{now_ms}"
    con = "con_SampleAlice"
    return [
        SampleRecord(
            "liveness",
            node.encode(),
            _json({"event": "nodeConnected", "timestamp": now_ms, "id": node, "ip": "127.0.0.1"}),
            "node connects",
        ),
        SampleRecord(
            "sessions",
            session.encode(),
            _json(
                {
                    "event": "sessionCreated",
                    "timestamp": now_ms + 1,
                    "sessionId": session,
                    "mediaNodeId": node,
                }
            ),
            "sessionCreated → mediacdr.cdr (without mediaNodeId, with uniqueSessionId)",
        ),
        SampleRecord(
            "sessions",
            session.encode(),
            _json(
                {
                    "event": "participantJoined",
                    "timestamp": now_ms + 2,
                    "sessionId": session,
                    "connectionId": con,
                    "location": "Berlin, Germany",
                    "ip": "37.122.145.190",
                    "platform": "Chrome 85.0.4183.121 on Linux 64-bit",
                    "clientData": "Alice",
                    "serverData": "",
                }
            ),
            "participantJoined → mediacdr.cdr (with participantId)",
        ),
        SampleRecord("sessions", b"ses_broken", b"{not json", "→ mediacdr.deadletter invalidJson"),
        SampleRecord(
            "sessions",
            session.encode(),
            _json({"event": "sessionCreated", "timestamp": "soon", "sessionId": session}),
            "→ mediacdr.deadletter schemaViolation",
        ),
        SampleRecord(
            "sessions",
            session.encode(),
            _json({"event": "sessionExploded", "timestamp": now_ms, "sessionId": session}),
            "→ mediacdr.deadletter unknownEvent",
        ),
    ]
