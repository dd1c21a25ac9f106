"""OpenVidu webhook bodies the rules write themselves (reference §2, §12 key sets)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.core.rules.state import Incident, NodeState

__all__ = [
    "broadcast_stopped",
    "connection_destroyed",
    "incident_closed",
    "incident_opened",
    "node_crashed",
    "node_described",
    "node_recovered",
    "node_removed",
    "node_status_changed",
    "participant_left",
    "recording_stopped",
    "session_destroyed",
    "session_disconnected",
]

CRASH_REASON = "nodeCrashed"
_HEAD = ("event", "timestamp", "sessionId", "uniqueSessionId")


def _seconds(start: int, end: int) -> int:
    """OpenVidu's integer duration: whole seconds, truncated."""
    return max(0, (end - start) // 1000)


def _ended(event: str, started: Mapping[str, Any], at: int, start_time: int) -> dict[str, Any]:
    """An end event from its start event: same keys plus startTime, duration, reason."""
    body: dict[str, Any] = {
        "event": event,
        "timestamp": at,
        "sessionId": started["sessionId"],
        "uniqueSessionId": started["uniqueSessionId"],
        "startTime": start_time,
        "duration": _seconds(start_time, at),
        "reason": CRASH_REASON,
    }
    for key, value in started.items():
        if key not in _HEAD and key not in body:
            body[key] = value
    return body


def connection_destroyed(created: Mapping[str, Any], at: int) -> dict[str, Any]:
    return _ended("webrtcConnectionDestroyed", created, at, int(created["timestamp"]))


def participant_left(joined: Mapping[str, Any], at: int) -> dict[str, Any]:
    return _ended("participantLeft", joined, at, int(joined["timestamp"]))


def broadcast_stopped(started: Mapping[str, Any], at: int) -> dict[str, Any]:
    return _ended("broadcastStopped", started, at, int(started["timestamp"]))


def recording_stopped(started: Mapping[str, Any], at: int) -> dict[str, Any]:
    """``stopped`` with size 0 and duration 0; never ``ready``: the files died with the node."""
    start_time = int(started.get("startTime", started["timestamp"]))
    body = _ended("recordingStatusChanged", started, at, start_time)
    body["duration"] = 0
    body["size"] = 0
    body["status"] = "stopped"
    return body


def session_destroyed(session_id: str, unique_id: str, created_at: int, at: int) -> dict[str, Any]:
    return {
        "event": "sessionDestroyed",
        "timestamp": at,
        "sessionId": session_id,
        "uniqueSessionId": unique_id,
        "startTime": created_at,
        "duration": _seconds(created_at, at),
        "reason": CRASH_REASON,
    }


def session_disconnected(
    participant: Mapping[str, Any], at: int, suggested: str | None
) -> dict[str, Any]:
    return {
        "event": "sessionDisconnected",
        "timestamp": at,
        "sessionId": participant["sessionId"],
        "uniqueSessionId": participant["uniqueSessionId"],
        "connectionId": participant["connectionId"],
        "reason": CRASH_REASON,
        "suggestedMediaNodeId": suggested,
    }


def _described(node: NodeState) -> dict[str, Any]:
    d = node.description
    return {"environmentId": d["environmentId"], "ip": d["ip"], "uri": d["uri"]}


def node_crashed(
    node: NodeState,
    incident: Incident,
    session_ids: Sequence[str],
    recording_ids: Sequence[str],
    broadcasts: Sequence[str],
) -> dict[str, Any]:
    return {
        "event": "nodeCrashed",
        "timestamp": incident.deadline,
        "id": node.id,
        **_described(node),
        "clusterId": node.description["clusterId"],
        "nodeRole": "medianode",
        "sessionIds": sorted(session_ids),
        "recordingIds": sorted(recording_ids),
        "broadcasts": sorted(broadcasts),
        "timeOfDisconnection": incident.disconnected_at,
    }


def node_recovered(node: NodeState, at: int) -> dict[str, Any]:
    return {
        "event": "nodeRecovered",
        "timestamp": at,
        "id": node.id,
        **_described(node),
        "clusterId": node.description["clusterId"],
        "nodeRole": "medianode",
    }


def node_status_changed(node: NodeState, at: int, old: str, new: str) -> dict[str, Any]:
    return {
        "event": "mediaNodeStatusChanged",
        "timestamp": at,
        "id": node.id,
        **_described(node),
        "newStatus": new,
        "oldStatus": old,
        "clusterId": node.description["clusterId"],
    }


def node_described(node: NodeState, at: int) -> dict[str, Any]:
    return {"event": "nodeDescribed", "timestamp": at, "id": node.id, **node.description}


def incident_opened(incident: Incident) -> dict[str, Any]:
    return {
        "event": "incidentOpened",
        "timestamp": incident.disconnected_at,
        "incidentId": incident.incident_id,
        "id": incident.node_id,
        "timeOfDisconnection": incident.disconnected_at,
        "deadline": incident.deadline,
        "cause": incident.cause,
    }


def incident_closed(incident: Incident, outcome: str, at: int) -> dict[str, Any]:
    return {
        "event": "incidentClosed",
        "timestamp": at,
        "incidentId": incident.incident_id,
        "id": incident.node_id,
        "outcome": outcome,
    }


def node_removed(node_id: str, at: int) -> dict[str, Any]:
    return {"event": "nodeRemoved", "timestamp": at, "id": node_id}
