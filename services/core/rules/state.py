"""The detector's state: one row per media node and one per (node, session), JSON-serialisable.

Rows are small on purpose (a Faust changelog record each); every field is plain JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["DESCRIPTION_FIELDS", "Incident", "Input", "NodeState", "SessionState"]

DESCRIPTION_FIELDS = ("environmentId", "ip", "uri", "clusterId")
Life = Literal["running", "grace", "crashed", "removed"]
InputKind = Literal["liveness", "session"]


@dataclass(slots=True)
class Input:
    """An accepted input event with where it came from; ``ref`` is opaque to the rules (the
    adapter's envelope), returned with a rejection so the original record can be dead-lettered."""

    kind: InputKind
    payload: dict[str, Any]
    source_partition: int
    source_offset: int
    ref: dict[str, Any] = field(default_factory=dict)

    @property
    def event(self) -> str:
        return str(self.payload["event"])

    @property
    def timestamp(self) -> int:
        return int(self.payload["timestamp"])

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Input:
        return cls(**row)


@dataclass(slots=True)
class Incident:
    """A disconnection being judged (R1–R4): ``deadline`` = ``disconnected_at`` + grace."""

    disconnected_at: int
    deadline: int
    cause: Literal["disconnected", "silent"]
    node_id: str

    @property
    def incident_id(self) -> str:
        return f"{self.node_id}_{self.disconnected_at}"


@dataclass(slots=True)
class NodeState:
    id: str
    life: Life = "running"
    description: dict[str, str | None] = field(
        default_factory=lambda: dict.fromkeys(DESCRIPTION_FIELDS)
    )
    last_status: str | None = None
    planned_shutdown: bool = False
    last_liveness_at: int | None = None
    heartbeating: bool = False
    incident: Incident | None = None
    crash: Incident | None = None
    removal_at: int | None = None
    sessions: list[str] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    #: Session input that arrived while the node's liveness was read more than a grace window
    #: behind it (``NodeEngine.on_session``) waits, in arrival order, in rows of its own
    #: (``RulesStore.put_waiting``) numbered ``waiting_first`` up to ``waiting_next``;
    #: ``waiting_head_at`` is the first one's timestamp. Numbers only grow: a row numbered from
    #: ``waiting_next`` on is never one a durable node row still lists (R9).
    waiting_first: int = 0
    waiting_next: int = 0
    waiting_head_at: int | None = None
    liveness_partition: int | None = None
    liveness_offset: int = -1
    heartbeats_in_incident: int = 0
    #: Per sessions partition (a string: rows are JSON), the last offset routed to this node;
    #: a node receives one partition's records in order, so anything at or below is a replay.
    session_offsets: dict[str, int] = field(default_factory=dict)
    #: The adapter's partition for this node (the rules ignore it).
    home_partition: int | None = None

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> NodeState:
        data = dict(row)
        data.pop("waiting", None)  # rows written before waiting input had rows of its own
        for key in ("incident", "crash"):
            if data.get(key) is not None:
                data[key] = Incident(**data[key])
        return cls(**data)


@dataclass(slots=True)
class SessionState:
    """One incarnation of a session on its node; ``crashed_at`` marks a crash tombstone."""

    session_id: str
    unique_session_id: str
    created_at: int
    node: str
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    recordings: dict[str, dict[str, Any]] = field(default_factory=dict)
    broadcast: dict[str, Any] | None = None
    crashed_at: int | None = None
    source_offset: int = -1
    recent_ids: list[str] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SessionState:
        return cls(**row)
