"""Which rows each record contributes to (CONTRACT §12), as ``Contribution``s to merge.

A pure function of one record: no reads, so no dependence on what arrived before. Links that need
another record (a recovery needs the crashed incarnation) are in ``recovery``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.core.projection.tables import order

if TYPE_CHECKING:
    from services.core.projection.records import ProjectedRecord

__all__ = ["Contribution", "contributions", "incident_disconnected_at", "utc"]

CRASH = "nodeCrashed"

#: Same-millisecond tie ranks of a node's status (OpenVidu's lifecycle order, crash in between).
_STATUS_RANK = {
    "launching": 0,
    "running": 2,
    "crashed": 3,
    "waiting-idle-to-terminate": 4,
    "terminating": 6,
    "terminated": 8,
    "canceled": 8,
    "failed": 8,
}
#: Same-millisecond tie ranks of a recording's status.
_RECORDING_RANK = {"started": 0, "stopped": 1, "ready": 2, "failed": 2}


@dataclass(frozen=True, slots=True)
class Contribution:
    table: str
    key: tuple[Any, ...]
    values: dict[str, Any]


def utc(timestamp_ms: int | None) -> datetime | None:
    if timestamp_ms is None:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


def incident_disconnected_at(incident_id: str) -> int | None:
    """``<nodeId>_<timeOfDisconnection>`` → the time of disconnection (node ids may hold ``_``)."""
    _node, _, tail = incident_id.rpartition("_")
    return int(tail) if tail.isdigit() else None


def contributions(record: ProjectedRecord) -> list[Contribution]:
    handler = _HANDLERS.get(record.event)
    found = handler(record) if handler else []
    if record.media_node_id:
        found.append(Contribution("media_nodes", (record.media_node_id,), {}))
    return found


# -- sessions, participants, recordings ----------------------------------------------------------


def _session_created(r: ProjectedRecord) -> list[Contribution]:
    b = r.body
    values = {
        "session_id": b["sessionId"],
        "media_node_id": r.media_node_id,
        "created_at": utc(r.timestamp),
    }
    return [Contribution("sessions", (b["uniqueSessionId"],), values)]


def _session_destroyed(r: ProjectedRecord) -> list[Contribution]:
    b = r.body
    usid = b["uniqueSessionId"]
    values: dict[str, Any] = {
        "session_id": b["sessionId"],
        "media_node_id": r.media_node_id,
        "created_at": utc(b.get("startTime")),
        "destroyed_at": utc(r.timestamp),
        "duration_s": b.get("duration"),
        "reason": b.get("reason"),
    }
    out = [Contribution("sessions", (usid,), values)]
    crash = _crash_of(r)
    if crash is not None:
        incident_id, lost_at = crash
        values["media_lost_at"] = utc(lost_at)
        values["incident_id"] = incident_id
        out.append(_incident(r, incident_id, {"sessions_closed": 1}))
        recovery = {
            "session_id": b["sessionId"],
            "from_node": r.media_node_id,
            "incident_id": incident_id,
            "crashed_at": utc(r.timestamp),
        }
        out.append(Contribution("session_recoveries", (usid,), recovery))
    return out


def _participant_joined(r: ProjectedRecord) -> list[Contribution]:
    return [_participant(r, {"joined_at": utc(r.timestamp)})]


def _participant_left(r: ProjectedRecord) -> list[Contribution]:
    b = r.body
    values = {
        "joined_at": utc(b.get("startTime")),
        "left_at": utc(r.timestamp),
        "duration_s": b.get("duration"),
        "reason": b.get("reason"),
    }
    out = [_participant(r, values)]
    crash = _crash_of(r)
    if crash is not None:
        out.append(_incident(r, crash[0], {"participants_evicted": 1}))
        before = {"session_id": b["sessionId"], "participants_before": 1}
        out.append(Contribution("session_recoveries", (b["uniqueSessionId"],), before))
    return out


def _participant(r: ProjectedRecord, values: dict[str, Any]) -> Contribution:
    b = r.body
    described = {
        "session_id": b["sessionId"],
        "location": b.get("location"),
        "ip": b.get("ip"),
        "platform": b.get("platform"),
        "client_data": b.get("clientData"),
        "server_data": b.get("serverData"),
    }
    key = (b["uniqueSessionId"], b.get("connectionId") or b["participantId"])
    return Contribution("participants", key, described | values)


def _recording(r: ProjectedRecord) -> list[Contribution]:
    b = r.body
    status = str(b["status"])
    values: dict[str, Any] = {
        "session_id": b["sessionId"],
        "media_node_id": r.media_node_id,
        "name": b.get("name"),
        "output_mode": b.get("outputMode"),
        "started_at": utc(b.get("startTime")),
        "status_order": order(r.timestamp, _RECORDING_RANK.get(status, 1)),
        "status": status,
        "reason": b.get("reason"),
        "duration_s": b.get("duration"),
        "size_bytes": b.get("size"),
    }
    if status != "started":
        values["stopped_at"] = utc(r.timestamp)
    out = [Contribution("recordings", (b["uniqueSessionId"], b["id"]), values)]
    crash = _crash_of(r)
    if crash is not None and status != "started":
        out.append(_incident(r, crash[0], {"recordings_stopped": 1}))
    return out


def _broadcast_stopped(r: ProjectedRecord) -> list[Contribution]:
    crash = _crash_of(r)
    return [] if crash is None else [_incident(r, crash[0], {"broadcasts_stopped": 1})]


# -- nodes and incidents --------------------------------------------------------------------------


def _node_crashed(r: ProjectedRecord) -> list[Contribution]:
    b = r.body
    node, at = b["id"], r.timestamp
    out = [
        _node(r, b, status="crashed", connected=False),
        Contribution("media_nodes", (node,), {"crashed_at": utc(at)}),
    ]
    incident_id = r.incident_id or f"{node}_{b['timeOfDisconnection']}"
    closed = {
        "disconnected_at": utc(b.get("timeOfDisconnection")),
        "crashed_at": utc(at),
        "decided_at": _instant(r.decided_at),
        "outcome_order": 1,
        "outcome": "crashed",
    }
    out.append(_incident(r, incident_id, closed, node=node))
    return out


def _node_recovered(r: ProjectedRecord) -> list[Contribution]:
    b = r.body
    out = [
        _node(r, b, status="running", connected=True),
        Contribution("media_nodes", (b["id"],), {"recovered_at": utc(r.timestamp)}),
    ]
    if r.incident_id:
        out.append(_incident(r, r.incident_id, {"recovered_at": utc(r.timestamp)}, node=b["id"]))
    return out


def _node_status_changed(r: ProjectedRecord) -> list[Contribution]:
    b = r.body
    status = str(b["newStatus"])
    out = [_node(r, b, status=status)]
    if r.incident_id and status == "terminated":
        out.append(_incident(r, r.incident_id, {"removed_at": utc(r.timestamp)}, node=b["id"]))
    return out


def _node_described(r: ProjectedRecord) -> list[Contribution]:
    return [_node(r, r.body, connected=True)]


def _incident_opened(r: ProjectedRecord) -> list[Contribution]:
    b = r.body
    node = b["id"]
    link = {
        "disconnected_at": utc(b["timeOfDisconnection"]),
        "link_order": order(b["timeOfDisconnection"]),
        "connected": False,
    }
    opened = {
        "disconnected_at": utc(b["timeOfDisconnection"]),
        "deadline_at": utc(b.get("deadline")),
        "cause": b.get("cause"),
        "outcome_order": 0,
        "outcome": "pending",
    }
    return [
        Contribution("media_nodes", (node,), link),
        _incident(r, b["incidentId"], opened, node=node),
    ]


def _incident_closed(r: ProjectedRecord) -> list[Contribution]:
    b = r.body
    node, outcome = b["id"], str(b["outcome"])
    closed: dict[str, Any] = {"outcome_order": 1, "outcome": outcome}
    out = []
    if outcome == "reconnected":
        closed["reconnected_at"] = utc(r.timestamp)
        link = {"link_order": order(r.timestamp, 1), "connected": True}
        out.append(Contribution("media_nodes", (node,), link))
    else:
        closed["crashed_at"] = utc(r.timestamp)
    out.append(_incident(r, b["incidentId"], closed, node=node))
    return out


def _node_removed(r: ProjectedRecord) -> list[Contribution]:
    node, at = r.body["id"], r.timestamp
    removed = {
        "removed_at": utc(at),
        "status_order": order(at, _STATUS_RANK["terminated"]),
        "status": "terminated",
        "link_order": order(at, 2),
        "connected": False,
    }
    out = [Contribution("media_nodes", (node,), removed)]
    if r.incident_id:
        out.append(_incident(r, r.incident_id, {"removed_at": utc(at)}, node=node))
    return out


def _node(
    r: ProjectedRecord,
    b: dict[str, Any],
    *,
    status: str | None = None,
    connected: bool | None = None,
) -> Contribution:
    """A node's description (as of this record) and, when given, its status and link state."""
    values: dict[str, Any] = {
        "described_order": order(r.timestamp),
        "environment_id": b.get("environmentId"),
        "ip": b.get("ip"),
        "uri": b.get("uri"),
        "cluster_id": b.get("clusterId"),
    }
    if status is not None:
        values["status_order"] = order(r.timestamp, _STATUS_RANK.get(status, 5))
        values["status"] = status
    if connected is not None:
        values["link_order"] = order(r.timestamp, 1)
        values["connected"] = connected
    return Contribution("media_nodes", (b["id"],), values)


def _incident(
    r: ProjectedRecord, incident_id: str, values: dict[str, Any], node: str | None = None
) -> Contribution:
    """A contribution to an incident; the row exists whichever of its records comes first."""
    node_id, _, _ = incident_id.rpartition("_")
    identity = {
        "media_node_id": node or node_id or r.media_node_id,
        "disconnected_at": utc(incident_disconnected_at(incident_id)),
    }
    return Contribution("node_incidents", (incident_id,), identity | values)


def _instant(header: str | None) -> datetime | None:
    """A ``YYYY-MM-DDTHH:MM:SS.sssZ`` header value; ``None`` when absent or unreadable."""
    if not header:
        return None
    try:
        return datetime.fromisoformat(header.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _crash_of(r: ProjectedRecord) -> tuple[str, int | None] | None:
    """``(incident id, time of disconnection)`` when the record closes something for a crash."""
    if r.body.get("reason") != CRASH or not r.incident_id:
        return None
    return r.incident_id, incident_disconnected_at(r.incident_id)


_HANDLERS: dict[str, Callable[[ProjectedRecord], list[Contribution]]] = {
    "sessionCreated": _session_created,
    "sessionDestroyed": _session_destroyed,
    "participantJoined": _participant_joined,
    "participantLeft": _participant_left,
    "recordingStatusChanged": _recording,
    "broadcastStopped": _broadcast_stopped,
    "nodeCrashed": _node_crashed,
    "nodeRecovered": _node_recovered,
    "mediaNodeStatusChanged": _node_status_changed,
    "nodeDescribed": _node_described,
    "incidentOpened": _incident_opened,
    "incidentClosed": _incident_closed,
    "nodeRemoved": _node_removed,
}
