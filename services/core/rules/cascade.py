"""The crash cascade of one session (CONTRACT §6), in the exact order OpenVidu Pro produces it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from services.core.rules import bodies
from services.core.rules.outputs import Emit
from services.core.rules.state import Incident, SessionState

__all__ = ["connection_key", "session_cascade"]


def connection_key(body: dict[str, Any]) -> str:
    return f"{body['connectionId']}|{body['streamId']}"


def session_cascade(
    session: SessionState, incident: Incident, suggested: str | None
) -> Iterator[Emit]:
    """Every record that closes ``session`` at the deadline; each connection is destroyed once."""
    at = incident.deadline

    def emit(body: dict[str, Any], stream: str = "cdr") -> Emit:
        return Emit(
            stream,  # type: ignore[arg-type]
            session.session_id,
            body,
            session.node,
            incident.incident_id,
        )

    joined = sorted(session.participants.items(), key=lambda kv: (kv[1]["joined"], kv[0]))
    rank = {cid: (p["joined"], cid) for cid, p in joined}
    open_connections = {k: c["body"] for k, c in session.connections.items()}

    def by_rank(connection_id: str) -> tuple[Any, ...]:
        return rank.get(connection_id, (float("inf"), connection_id))

    for cid, participant in joined:
        receivers = [
            b
            for b in open_connections.values()
            if b["connection"] == "INBOUND" and b.get("receivingFrom") == cid
        ]
        receivers.sort(key=lambda b: (by_rank(b["connectionId"]), b["streamId"]))
        inbound = [
            b
            for b in open_connections.values()
            if b["connection"] == "INBOUND" and b["connectionId"] == cid
        ]
        inbound.sort(key=lambda b: (by_rank(b.get("receivingFrom", "")), b["streamId"]))
        outbound = sorted(
            (
                b
                for b in open_connections.values()
                if b["connection"] == "OUTBOUND" and b["connectionId"] == cid
            ),
            key=lambda b: b["streamId"],
        )
        for body in (*receivers, *inbound, *outbound):
            if open_connections.pop(connection_key(body), None) is not None:
                yield emit(bodies.connection_destroyed(body, at))
        yield emit(bodies.participant_left(participant["body"], at))
        yield emit(bodies.session_disconnected(participant["body"], at, suggested), "notifications")
    for _rid, started in sorted(session.recordings.items()):
        yield emit(bodies.recording_stopped(started, at))
    if session.broadcast is not None:
        yield emit(bodies.broadcast_stopped(session.broadcast, at))
    yield emit(
        bodies.session_destroyed(
            session.session_id, session.unique_session_id, session.created_at, at
        )
    )
