"""The sample story `make up` plays: two nodes, sessions, one blip, one crash, bad input.

Stamped from the wall clock, so the crash is decided a few seconds after `make up` sends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.simulator import payloads as p

__all__ = ["SampleRecord", "sample_records"]

BLIP_NODE = "media_sample-blip"
CRASH_NODE = "media_sample-crash"


@dataclass(frozen=True, slots=True)
class SampleRecord:
    topic_role: str  # "liveness" | "sessions"
    key: bytes
    value: bytes
    note: str


def _liveness(body: p.Payload, note: str) -> SampleRecord:
    return SampleRecord("liveness", str(body["id"]).encode(), p.encode(body), note)


def _session(body: p.Payload, note: str) -> SampleRecord:
    return SampleRecord("sessions", str(body["sessionId"]).encode(), p.encode(body), note)


def _joined(session: str, connection: str, at: int, name: str) -> SampleRecord:
    person = p.Person(client_data=name)
    body = p.participant_joined(session, connection, at, person)
    return _session(body, f"{name} joins {session}")


def _published(session: str, connection: str, at: int) -> SampleRecord:
    body = p.outbound_created(session, connection, at, f"str_CAM_{connection}")
    return _session(body, f"{connection} publishes")


def sample_records(now_ms: int) -> list[SampleRecord]:
    """The story, in the order a real cluster would emit it."""
    t = now_ms
    blip_session, crash_session = f"ses_blip{t}", f"ses_crash{t}"
    created = p.session_created
    return [
        _liveness(p.node_connected(BLIP_NODE, t, ip="10.0.0.1"), "node blip connects"),
        _liveness(p.node_connected(CRASH_NODE, t, ip="10.0.0.2"), "node crash connects"),
        _session(created(blip_session, t + 10, BLIP_NODE), "session on blip"),
        _session(created(crash_session, t + 20, CRASH_NODE), "session on crash"),
        _joined(crash_session, "con_Alice", t + 30, "Alice"),
        _joined(crash_session, "con_Bob", t + 40, "Bob"),
        _published(crash_session, "con_Alice", t + 50),
        _liveness(p.node_disconnected(BLIP_NODE, t + 100), "blip disconnects…"),
        _liveness(p.node_connected(BLIP_NODE, t + 1100), "…and is back in 1 s: a blip, no CDR"),
        _liveness(
            p.node_disconnected(CRASH_NODE, t + 200), "crash disconnects for good → nodeCrashed"
        ),
        SampleRecord("sessions", b"ses_broken", b"{not json", "→ mediacdr.deadletter invalidJson"),
        _session(
            {"event": "sessionCreated", "timestamp": t, "sessionId": "ses_x"},
            "→ mediacdr.deadletter schemaViolation",
        ),
        _session(
            {"event": "sessionExploded", "timestamp": t, "sessionId": "ses_x"},
            "→ mediacdr.deadletter unknownEvent",
        ),
    ]
