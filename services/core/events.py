"""The typed events of mediacdr: what flows on every topic, one frozen dataclass per event name.

Wire names are explicit and stable (``name``, ``version``), never a Python class path. Attributes
are snake_case, JSON keys camelCase (see :mod:`services.core.wire_names`); ``ABSENT`` marks a key
that is not on the wire and ``None`` a JSON ``null``. A session event has one class for its
input form (``mediaNodeId`` extension, ``uniqueSessionId``/``participantId`` optional) and its CDR
form (no ``mediaNodeId``; ``uniqueSessionId``/``participantId`` present), so the CDR copy of an
input is ``dataclasses.replace`` of it. The JSON Schemas in ``schemas/`` hold the value rules
(enums, conditional keys); ``tests/contract/test_schemas.py`` keeps both in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from services.core.wire_names import ABSENT, Absent, WireField, wire_fields

__all__ = [
    "ABSENT",
    "CDR_EVENTS",
    "EVENT_TYPES",
    "LIVENESS_EVENTS",
    "NODE_FACT_EVENTS",
    "NOTICE_EVENTS",
    "SCHEMA_KINDS",
    "SESSION_EVENTS",
    "Absent",
    "BroadcastStarted",
    "BroadcastStopped",
    "Event",
    "FilterEventDispatched",
    "IncidentClosed",
    "IncidentOpened",
    "MassDisconnect",
    "MediaNodeStatusChanged",
    "NodeConnected",
    "NodeCrashed",
    "NodeDescribed",
    "NodeDisconnected",
    "NodeEvent",
    "NodeHeartbeat",
    "NodeRecovered",
    "NodeRemoved",
    "ParticipantJoined",
    "ParticipantLeft",
    "RecordingStatusChanged",
    "SessionCreated",
    "SessionDestroyed",
    "SessionDisconnected",
    "SessionEvent",
    "SignalSent",
    "WebrtcConnectionCreated",
    "WebrtcConnectionDestroyed",
    "WireField",
    "event_from_wire",
    "event_to_wire",
    "schema_id",
    "wire_fields",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: a wire name, a version and an epoch-ms ``timestamp``."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    renames: ClassVar[Mapping[str, str]] = MappingProxyType({})

    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEvent(Event):
    """An event about one media node, keyed by its ``id``."""

    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _DescribedNode(NodeEvent):
    """OpenVidu's node description; ``None`` where mediacdr never learnt the value."""

    environment_id: str | None
    ip: str | None
    uri: str | None
    cluster_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvent(Event):
    """An OpenVidu session event, input (with ``mediaNodeId``) or CDR form."""

    session_id: str
    unique_session_id: str | Absent = ABSENT
    media_node_id: str | Absent = ABSENT


# --- liveness input (CONTRACT §3) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConnected(NodeEvent):
    """The node (re)established its link to the master."""

    name: ClassVar[str] = "nodeConnected"
    environment_id: str | Absent = ABSENT
    ip: str | Absent = ABSENT
    uri: str | Absent = ABSENT
    cluster_id: str | Absent = ABSENT
    load: float | Absent = ABSENT


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeDisconnected(NodeEvent):
    """The master lost the link to the node."""

    name: ClassVar[str] = "nodeDisconnected"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHeartbeat(NodeEvent):
    """Periodic sign of life."""

    name: ClassVar[str] = "nodeHeartbeat"
    load: float | Absent = ABSENT


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaNodeStatusChanged(_DescribedNode):
    """Planned node lifecycle (liveness input and CDR output); ``oldStatus`` null at launch."""

    name: ClassVar[str] = "mediaNodeStatusChanged"
    new_status: str
    old_status: str | None


# --- session events (CONTRACT §4 input, §6-§7 CDR) -----------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCreated(SessionEvent):
    """A session was initialised; the input form names its hosting node."""

    name: ClassVar[str] = "sessionCreated"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDestroyed(SessionEvent):
    """A session closed; ``duration`` in whole seconds."""

    name: ClassVar[str] = "sessionDestroyed"
    start_time: int
    duration: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Participant(SessionEvent):
    participant_id: str | Absent = ABSENT
    connection_id: str
    location: str
    ip: str
    platform: str
    client_data: str
    server_data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantJoined(_Participant):
    """A connection joined the session."""

    name: ClassVar[str] = "participantJoined"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantLeft(_Participant):
    """A connection left the session."""

    name: ClassVar[str] = "participantLeft"
    start_time: int
    duration: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _WebrtcConnection(SessionEvent):
    stream_id: str
    participant_id: str | Absent = ABSENT
    connection_id: str
    connection: str
    receiving_from: str | Absent = ABSENT
    video_source: str | Absent = ABSENT
    video_framerate: int | Absent = ABSENT
    video_dimensions: str | Absent = ABSENT
    audio_enabled: bool
    video_enabled: bool
    rtsp_uri: str | Absent = ABSENT
    adaptative_bitrate: bool | Absent = ABSENT
    network_cache: int | Absent = ABSENT
    only_play_with_subscribers: bool | Absent = ABSENT


@dataclass(frozen=True, slots=True, kw_only=True)
class WebrtcConnectionCreated(_WebrtcConnection):
    """A media connection (OUTBOUND publisher or INBOUND subscriber) was established."""

    name: ClassVar[str] = "webrtcConnectionCreated"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebrtcConnectionDestroyed(_WebrtcConnection):
    """A media connection closed."""

    name: ClassVar[str] = "webrtcConnectionDestroyed"
    start_time: int
    duration: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStatusChanged(SessionEvent):
    """A recording started, stopped, became ready or failed; ``duration`` in decimal seconds."""

    name: ClassVar[str] = "recordingStatusChanged"
    renames: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"recording_name": "name", "recording_media_node_id": "media_node_id"}
    )
    start_time: int
    duration: float
    reason: str | Absent = ABSENT
    id: str
    recording_name: str
    output_mode: str
    resolution: str | Absent = ABSENT
    recording_layout: str | Absent = ABSENT
    frame_rate: int | Absent = ABSENT
    custom_layout: str | Absent = ABSENT
    recording_media_node_id: str | Absent = ABSENT
    has_audio: bool
    has_video: bool
    size: int
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastStarted(SessionEvent):
    """A session's broadcast started (fields chosen by mediacdr, see docs/WIRE.md)."""

    name: ClassVar[str] = "broadcastStarted"
    broadcast_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastStopped(SessionEvent):
    """A session's broadcast stopped."""

    name: ClassVar[str] = "broadcastStopped"
    broadcast_url: str
    start_time: int
    duration: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalSent(SessionEvent):
    """A signal was sent; ``from`` is null when the application server sent it."""

    name: ClassVar[str] = "signalSent"
    renames: ClassVar[Mapping[str, str]] = MappingProxyType({"from_": "from"})
    from_: str | None
    to: list[str]
    type: str
    data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterEventDispatched(SessionEvent):
    """A media filter raised an event."""

    name: ClassVar[str] = "filterEventDispatched"
    participant_id: str | Absent = ABSENT
    connection_id: str
    stream_id: str
    filter_type: str
    event_type: str
    data: str


# --- node events of the CDR (CONTRACT §5-§7) -----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCrashed(_DescribedNode):
    """The node stayed disconnected past the grace window; id lists sorted ascending."""

    name: ClassVar[str] = "nodeCrashed"
    node_role: str
    session_ids: list[str]
    recording_ids: list[str]
    broadcasts: list[str]
    time_of_disconnection: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecovered(_DescribedNode):
    """A crashed node reconnected before removal; it is running again and empty."""

    name: ClassVar[str] = "nodeRecovered"
    node_role: str


# --- node facts (CONTRACT §8) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeDescribed(_DescribedNode):
    """The node's description changed."""

    name: ClassVar[str] = "nodeDescribed"


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentOpened(NodeEvent):
    """The node's link went down (or silent) at ``timeOfDisconnection``; crash at ``deadline``."""

    name: ClassVar[str] = "incidentOpened"
    incident_id: str
    time_of_disconnection: int
    deadline: int
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentClosed(NodeEvent):
    """An incident ended: a blip (``reconnected``) or a crash (``crashed``)."""

    name: ClassVar[str] = "incidentClosed"
    incident_id: str
    outcome: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRemoved(NodeEvent):
    """A crashed node was removed from the cluster after the reconnection timeout."""

    name: ClassVar[str] = "nodeRemoved"


@dataclass(frozen=True, slots=True, kw_only=True)
class MassDisconnect(Event):
    """More than ``threshold`` of the ``running_nodes`` disconnected in one grace window
    (``window_start`` … ``timestamp``): likely the observer or the network, not the nodes.
    About the cluster, not one node; crash decisions are unchanged."""

    name: ClassVar[str] = "massDisconnect"
    window_start: int
    window_ms: int
    node_ids: list[str]
    running_nodes: int
    threshold: float


# --- client notices (CONTRACT §9) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDisconnected(Event):
    """A participant was evicted by a crash; re-create the session on the suggested node."""

    name: ClassVar[str] = "sessionDisconnected"
    session_id: str
    unique_session_id: str
    connection_id: str
    reason: str
    suggested_media_node_id: str | None


# --- catalogue -----------------------------------------------------------------------------------

_CLASSES: tuple[type[Event], ...] = (
    NodeConnected,
    NodeDisconnected,
    NodeHeartbeat,
    MediaNodeStatusChanged,
    SessionCreated,
    SessionDestroyed,
    ParticipantJoined,
    ParticipantLeft,
    WebrtcConnectionCreated,
    WebrtcConnectionDestroyed,
    RecordingStatusChanged,
    BroadcastStarted,
    BroadcastStopped,
    SignalSent,
    FilterEventDispatched,
    NodeCrashed,
    NodeRecovered,
    NodeDescribed,
    IncidentOpened,
    IncidentClosed,
    NodeRemoved,
    MassDisconnect,
    SessionDisconnected,
)

EVENT_TYPES: Mapping[str, type[Event]] = MappingProxyType({c.name: c for c in _CLASSES})

LIVENESS_EVENTS = frozenset(
    {"nodeConnected", "nodeDisconnected", "nodeHeartbeat", "mediaNodeStatusChanged"}
)
SESSION_EVENTS = frozenset(c.name for c in _CLASSES if issubclass(c, SessionEvent))
CDR_EVENTS = SESSION_EVENTS | {"nodeCrashed", "nodeRecovered", "mediaNodeStatusChanged"}
NODE_FACT_EVENTS = frozenset(
    {"nodeDescribed", "incidentOpened", "incidentClosed", "nodeRemoved", "massDisconnect"}
)
NOTICE_EVENTS = frozenset({"sessionDisconnected"})

#: Schema kind → the events with a schema file ``schemas/<kind>/<event>.v1.schema.json``.
SCHEMA_KINDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "liveness": LIVENESS_EVENTS,
        "session": SESSION_EVENTS,
        "cdr": CDR_EVENTS,
        "nodefacts": NODE_FACT_EVENTS,
        "notice": NOTICE_EVENTS,
    }
)
_INPUT_KINDS = frozenset({"liveness", "session"})


def schema_id(kind: str, event: str, version: int = 1) -> str:
    """The ``$id`` of a schema; for output kinds it is also the ``ce_dataschema`` header."""
    if kind not in SCHEMA_KINDS:
        raise ValueError(f"unknown schema kind {kind!r}")
    prefix = f"{kind}." if kind in _INPUT_KINDS else ""
    return f"urn:mediacdr:{prefix}{event}:{version}"


def event_from_wire(obj: Mapping[str, Any]) -> Event:
    """Build the event a JSON object describes; checks keys only (values: the JSON Schema)."""
    name = obj.get("event")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown event {name!r}")
    fields = wire_fields(cls)
    unknown = obj.keys() - {f.wire for f in fields} - {"event"}
    if unknown:
        raise ValueError(f"{name}: unknown keys {sorted(unknown)}")
    missing = [f.wire for f in fields if f.required and f.wire not in obj]
    if missing:
        raise ValueError(f"{name}: missing keys {missing}")
    return cls(**{f.attr: _copy(obj[f.wire]) for f in fields if f.wire in obj})


def event_to_wire(ev: Event) -> dict[str, Any]:
    """The JSON object of an event: ``event`` first, then declared order, ``ABSENT`` left out."""
    wire: dict[str, Any] = {"event": ev.name}
    for f in wire_fields(type(ev)):
        value = getattr(ev, f.attr)
        if value is not ABSENT:
            wire[f.wire] = _copy(value)
    return wire


def _copy(value: Any) -> Any:
    """Lists are the only mutable values; copy them so events and dicts share nothing."""
    return list(value) if isinstance(value, list) else value
