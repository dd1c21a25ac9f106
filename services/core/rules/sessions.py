"""Applying one accepted session event to its session's state (CONTRACT §4, §11).

Raises a :class:`~services.core.errors.RejectedInput` for what cannot be applied; the caller
turns it into a dead letter. The CDR copy is built before the state changes, so a rejected
event changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.core.errors import Duplicate, UnknownConnection
from services.core.rules.cascade import connection_key
from services.core.rules.state import SessionState

__all__ = ["apply_to_session"]

Handler = Callable[[SessionState, dict[str, Any]], None]


def apply_to_session(session: SessionState, body: dict[str, Any]) -> None:
    """Update ``session`` with the CDR copy ``body`` of an input event."""
    handler = _HANDLERS.get(str(body["event"]))
    if handler is not None:
        handler(session, body)


def _participant_joined(session: SessionState, body: dict[str, Any]) -> None:
    cid = body["connectionId"]
    if cid in session.participants:
        raise Duplicate(f"participant {cid} already joined {session.unique_session_id}")
    session.participants[cid] = {"joined": int(body["timestamp"]), "body": body}


def _participant_left(session: SessionState, body: dict[str, Any]) -> None:
    cid = body["connectionId"]
    if session.participants.pop(cid, None) is None:
        raise UnknownConnection(f"participant {cid} is not in {session.unique_session_id}")
    session.connections = {
        key: c
        for key, c in session.connections.items()
        if c["body"]["connectionId"] != cid and c["body"].get("receivingFrom") != cid
    }


def _connection_created(session: SessionState, body: dict[str, Any]) -> None:
    cid = body["connectionId"]
    if cid not in session.participants:
        raise UnknownConnection(f"connection {cid} has not joined {session.unique_session_id}")
    key = connection_key(body)
    if key in session.connections:
        raise Duplicate(f"media connection {key} already exists")
    session.connections[key] = {"created": int(body["timestamp"]), "body": body}


def _connection_destroyed(session: SessionState, body: dict[str, Any]) -> None:
    key = connection_key(body)
    if session.connections.pop(key, None) is None:
        raise UnknownConnection(f"no open media connection {key}")


def _recording(session: SessionState, body: dict[str, Any]) -> None:
    if body["status"] == "started":
        session.recordings[str(body["id"])] = body
    else:
        session.recordings.pop(str(body["id"]), None)


def _broadcast_started(session: SessionState, body: dict[str, Any]) -> None:
    session.broadcast = body


def _broadcast_stopped(session: SessionState, _body: dict[str, Any]) -> None:
    session.broadcast = None


_HANDLERS: dict[str, Handler] = {
    "participantJoined": _participant_joined,
    "participantLeft": _participant_left,
    "webrtcConnectionCreated": _connection_created,
    "webrtcConnectionDestroyed": _connection_destroyed,
    "recordingStatusChanged": _recording,
    "broadcastStarted": _broadcast_started,
    "broadcastStopped": _broadcast_stopped,
}
