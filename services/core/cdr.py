"""Building CDR records (OpenVidu webhook bodies) from accepted input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PARTICIPANT_ID_EVENTS", "cdr_copy", "unique_session_id"]

#: Events whose OpenVidu key set has the deprecated ``participantId`` (= ``connectionId``).
PARTICIPANT_ID_EVENTS = frozenset(
    {
        "participantJoined",
        "participantLeft",
        "webrtcConnectionCreated",
        "webrtcConnectionDestroyed",
        "filterEventDispatched",
    }
)


def unique_session_id(session_id: str, created_at_ms: int) -> str:
    """OpenVidu's ``<sessionId>_<sessionCreated timestamp>``."""
    return f"{session_id}_{created_at_ms}"


def cdr_copy(payload: Mapping[str, Any], unique_session_id: str) -> dict[str, Any]:
    """The CDR copy of a session event (CONTRACT §4).

    The input minus ``mediaNodeId``, plus ``uniqueSessionId`` and ``participantId`` when the
    input lacks them; every other key and value is kept as received.
    """
    body = {k: v for k, v in payload.items() if k != "mediaNodeId"}
    body.setdefault("uniqueSessionId", unique_session_id)
    if payload["event"] in PARTICIPANT_ID_EVENTS and "connectionId" in payload:
        body.setdefault("participantId", payload["connectionId"])
    return body
