"""The merge rule of every projected column (the store's models hold the column types).

Order columns (``*_order``) encode ``timestamp_ms * ORDER_SCALE + rank``: the latest event wins,
and the rank breaks ties between events stamped in the same millisecond in the order the detector
writes them (a crash, then the removal's `terminating`, then `terminated`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from services.core.projection.merge import Add, First, Latest, Max, Min, TableSpec

__all__ = ["ORDER_SCALE", "TABLES", "order"]

ORDER_SCALE = 16


def order(timestamp_ms: int, rank: int = 0) -> int:
    return timestamp_ms * ORDER_SCALE + rank


SESSIONS = TableSpec(
    "sessions",
    ("unique_session_id",),
    {
        "session_id": First(),
        "media_node_id": First(),
        "created_at": Min(),
        "destroyed_at": First(),
        "duration_s": First(),
        "reason": First(),
        "media_lost_at": First(),
        "incident_id": First(),
    },
)

PARTICIPANTS = TableSpec(
    "participants",
    ("unique_session_id", "connection_id"),
    {
        "session_id": First(),
        "joined_at": Min(),
        "left_at": First(),
        "duration_s": First(),
        "reason": First(),
        "location": First(),
        "ip": First(),
        "platform": First(),
        "client_data": First(),
        "server_data": First(),
    },
)

RECORDINGS = TableSpec(
    "recordings",
    ("unique_session_id", "id"),
    {
        "session_id": First(),
        "media_node_id": First(),
        "name": First(),
        "output_mode": First(),
        "started_at": First(),
        "stopped_at": Min(),
        "status_order": Max(),
        "status": Latest("status_order"),
        "reason": Latest("status_order"),
        "duration_s": Latest("status_order"),
        "size_bytes": Latest("status_order"),
    },
)

MEDIA_NODES = TableSpec(
    "media_nodes",
    ("id",),
    {
        "described_order": Max(),
        "environment_id": Latest("described_order"),
        "ip": Latest("described_order"),
        "uri": Latest("described_order"),
        "cluster_id": Latest("described_order"),
        "status_order": Max(),
        "status": Latest("status_order"),
        "link_order": Max(),
        "connected": Latest("link_order", default=True),
        "disconnected_at": Max(),
        "crashed_at": Max(),
        "recovered_at": Max(),
        "removed_at": Max(),
    },
)

NODE_INCIDENTS = TableSpec(
    "node_incidents",
    ("incident_id",),
    {
        "media_node_id": First(),
        "disconnected_at": First(),
        "deadline_at": First(),
        "cause": First(),
        "outcome_order": Max(),
        "outcome": Latest("outcome_order", default="pending"),
        "reconnected_at": First(),
        "crashed_at": First(),
        "decided_at": Min(),
        "recovered_at": First(),
        "removed_at": First(),
        "sessions_closed": Add(),
        "participants_evicted": Add(),
        "recordings_stopped": Add(),
        "broadcasts_stopped": Add(),
    },
)

#: A crashed incarnation of a session, and its recovery once a new one is created (CONTRACT §10).
#: The link columns (new_unique_session_id …) are written by the recovery step, not merged.
SESSION_RECOVERIES = TableSpec(
    "session_recoveries",
    ("old_unique_session_id",),
    {
        "session_id": First(),
        "from_node": First(),
        "incident_id": First(),
        "crashed_at": First(),
        "participants_before": Add(),
    },
)

TABLES: Mapping[str, TableSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            SESSIONS,
            PARTICIPANTS,
            RECORDINGS,
            MEDIA_NODES,
            NODE_INCIDENTS,
            SESSION_RECOVERIES,
        )
    }
)
