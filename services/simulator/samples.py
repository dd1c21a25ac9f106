"""The sample story `make up` plays: two nodes, sessions, one blip, one crash, bad input.

Stamped from the wall clock, so the crash is decided a few seconds after `make up` sends it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["SampleRecord", "sample_records"]

BLIP_NODE = "media_sample-blip"
CRASH_NODE = "media_sample-crash"


@dataclass(frozen=True, slots=True)
class SampleRecord:
    topic_role: str  # "liveness" | "sessions"
    key: bytes
    value: bytes
    note: str


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _liveness(event: str, node: str, at: int, note: str, **extra: Any) -> SampleRecord:
    body = {"event": event, "timestamp": at, "id": node, **extra}
    return SampleRecord("liveness", node.encode(), _json(body), note)


def _session(event: str, session: str, at: int, note: str, **extra: Any) -> SampleRecord:
    body = {"event": event, "timestamp": at, "sessionId": session, **extra}
    return SampleRecord("sessions", session.encode(), _json(body), note)


def _joined(session: str, connection: str, at: int, name: str) -> SampleRecord:
    return _session(
        "participantJoined",
        session,
        at,
        f"{name} joins {session}",
        connectionId=connection,
        location="Berlin, Germany",
        ip="37.122.145.190",
        platform="Chrome 85.0.4183.121 on Linux 64-bit",
        clientData=name,
        serverData="",
    )


def _published(session: str, connection: str, at: int) -> SampleRecord:
    return _session(
        "webrtcConnectionCreated",
        session,
        at,
        f"{connection} publishes",
        streamId=f"str_CAM_{connection}",
        connectionId=connection,
        connection="OUTBOUND",
        videoSource="CAMERA",
        videoFramerate=30,
        videoDimensions='{"width":1280,"height":720}',
        audioEnabled=True,
        videoEnabled=True,
    )


def sample_records(now_ms: int) -> list[SampleRecord]:
    """The story, in the order a real cluster would emit it."""
    t = now_ms
    blip_session, crash_session = f"ses_blip{t}", f"ses_crash{t}"
    return [
        _liveness("nodeConnected", BLIP_NODE, t, "node blip connects", ip="10.0.0.1"),
        _liveness("nodeConnected", CRASH_NODE, t, "node crash connects", ip="10.0.0.2"),
        _session("sessionCreated", blip_session, t + 10, "session on blip", mediaNodeId=BLIP_NODE),
        _session(
            "sessionCreated", crash_session, t + 20, "session on crash", mediaNodeId=CRASH_NODE
        ),
        _joined(crash_session, "con_Alice", t + 30, "Alice"),
        _joined(crash_session, "con_Bob", t + 40, "Bob"),
        _published(crash_session, "con_Alice", t + 50),
        _liveness("nodeDisconnected", BLIP_NODE, t + 100, "blip disconnects…"),
        _liveness("nodeConnected", BLIP_NODE, t + 1100, "…and is back in 1 s: a blip, no CDR"),
        _liveness(
            "nodeDisconnected", CRASH_NODE, t + 200, "crash disconnects for good → nodeCrashed"
        ),
        SampleRecord("sessions", b"ses_broken", b"{not json", "→ mediacdr.deadletter invalidJson"),
        _session("sessionCreated", "ses_x", t, "→ mediacdr.deadletter schemaViolation"),
        _session("sessionExploded", "ses_x", t, "→ mediacdr.deadletter unknownEvent"),
    ]
