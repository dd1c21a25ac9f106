"""Builders for the rule engine's unit tests: realistic input payloads and a small rig.

Payloads follow the OpenVidu wire format (reference §2) as mediacdr receives it (CONTRACT §3,
§4): session events without ``uniqueSessionId`` or ``participantId`` (the detector adds them),
``sessionCreated`` with the ``mediaNodeId`` extension.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from services.core.rules import (
    Emit,
    InMemoryRulesStore,
    Input,
    NodeEngine,
    Output,
    Reject,
    RuleSettings,
)
from services.core.schemas import compiled_validator

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
GRACE_MS = 3000

Payload = dict[str, Any]

_SCHEMA_KIND = {"cdr": "cdr", "nodes": "nodefacts", "notifications": "notice"}


# -- liveness (CONTRACT §3) ---------------------------------------------------------------------


def describe(node: str) -> Payload:
    """The description fields of a node, derived from its id."""
    environment = node.removeprefix("media_")
    return {
        "environmentId": environment,
        "ip": "172.17.0.3",
        "uri": "ws://172.17.0.3:8888/kurento",
        "clusterId": "MY_CLUSTER",
    }


def node_connected(node: str, ts: int, *, described: bool = True, load: float = 12.5) -> Payload:
    body: Payload = {"event": "nodeConnected", "timestamp": ts, "id": node}
    if described:
        body |= describe(node)
    body["load"] = load
    return body


def node_disconnected(node: str, ts: int) -> Payload:
    return {"event": "nodeDisconnected", "timestamp": ts, "id": node}


def node_heartbeat(node: str, ts: int, load: float = 23.4) -> Payload:
    return {"event": "nodeHeartbeat", "timestamp": ts, "id": node, "load": load}


def node_status_changed(node: str, ts: int, old: str | None, new: str) -> Payload:
    return {
        "event": "mediaNodeStatusChanged",
        "timestamp": ts,
        "id": node,
        **describe(node),
        "newStatus": new,
        "oldStatus": old,
    }


# -- session lifecycle (CONTRACT §4) ------------------------------------------------------------


def session_created(sid: str, ts: int, node: str) -> Payload:
    return {"event": "sessionCreated", "timestamp": ts, "sessionId": sid, "mediaNodeId": node}


def session_destroyed(
    sid: str, ts: int, created: int, reason: str = "lastParticipantLeft"
) -> Payload:
    return {
        "event": "sessionDestroyed",
        "timestamp": ts,
        "sessionId": sid,
        "startTime": created,
        "duration": (ts - created) // 1000,
        "reason": reason,
    }


def _participant(cid: str) -> Payload:
    return {
        "location": "Berlin, Germany",
        "ip": "37.122.145.190",
        "platform": "Chrome 85.0.4183.121 on Linux 64-bit",
        "clientData": f"user-{cid.removeprefix('con_')}",
        "serverData": f"{{'user': '{cid}'}}",
    }


def participant_joined(sid: str, cid: str, ts: int) -> Payload:
    return {
        "event": "participantJoined",
        "timestamp": ts,
        "sessionId": sid,
        "connectionId": cid,
        **_participant(cid),
    }


def participant_left(
    sid: str, cid: str, ts: int, joined: int, reason: str = "disconnect"
) -> Payload:
    return {
        "event": "participantLeft",
        "timestamp": ts,
        "sessionId": sid,
        "startTime": joined,
        "duration": (ts - joined) // 1000,
        "reason": reason,
        "connectionId": cid,
        **_participant(cid),
    }


def stream_id(publisher: str) -> str:
    """The id of the camera stream ``publisher`` publishes (INBOUND connections share it)."""
    return f"str_CAM_{publisher.removeprefix('con_')[:4]}_{publisher}"


def _media(video: bool) -> Payload:
    if not video:
        return {"audioEnabled": True, "videoEnabled": False}
    return {
        "videoSource": "CAMERA",
        "videoFramerate": 30,
        "videoDimensions": '{"width":1280,"height":720}',
        "audioEnabled": True,
        "videoEnabled": True,
    }


def outbound_created(sid: str, cid: str, ts: int, *, video: bool = True) -> Payload:
    return {
        "event": "webrtcConnectionCreated",
        "timestamp": ts,
        "sessionId": sid,
        "streamId": stream_id(cid),
        "connectionId": cid,
        "connection": "OUTBOUND",
        **_media(video),
    }


def inbound_created(sid: str, cid: str, sender: str, ts: int, *, video: bool = True) -> Payload:
    return {
        "event": "webrtcConnectionCreated",
        "timestamp": ts,
        "sessionId": sid,
        "streamId": stream_id(sender),
        "connectionId": cid,
        "connection": "INBOUND",
        "receivingFrom": sender,
        **_media(video),
    }


def connection_destroyed(created: Payload, ts: int, reason: str = "unpublish") -> Payload:
    """The input ``webrtcConnectionDestroyed`` closing the connection ``created`` opened."""
    return {
        **created,
        "event": "webrtcConnectionDestroyed",
        "timestamp": ts,
        "startTime": created["timestamp"],
        "duration": (ts - int(created["timestamp"])) // 1000,
        "reason": reason,
    }


def recording_started(sid: str, ts: int, rid: str | None = None) -> Payload:
    """An INDIVIDUAL recording: no resolution/recordingLayout/frameRate, size and duration 0."""
    return {
        "event": "recordingStatusChanged",
        "timestamp": ts,
        "sessionId": sid,
        "startTime": ts,
        "duration": 0,
        "id": rid or sid,
        "name": "MyRecording",
        "outputMode": "INDIVIDUAL",
        "hasAudio": True,
        "hasVideo": True,
        "size": 0,
        "status": "started",
    }


def broadcast_started(sid: str, ts: int) -> Payload:
    return {
        "event": "broadcastStarted",
        "timestamp": ts,
        "sessionId": sid,
        "broadcastUrl": "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl",
    }


def signal_sent(sid: str, ts: int, sender: str | None, to: Sequence[str]) -> Payload:
    return {
        "event": "signalSent",
        "timestamp": ts,
        "sessionId": sid,
        "from": sender,
        "to": list(to),
        "type": "my-chat",
        "data": "{'message':'Hello!','name':'Alice'}",
    }


# -- driving the engine -------------------------------------------------------------------------

LIVENESS_PARTITION = 0
SESSIONS_PARTITION = 1


class Rig:
    """One engine on a fresh in-memory store; every input gets a fresh, increasing offset."""

    def __init__(self, settings: RuleSettings | None = None) -> None:
        self.store = InMemoryRulesStore()
        self.engine = NodeEngine(self.store, settings or RuleSettings(grace_ms=GRACE_MS))
        self._offsets = itertools.count(1)

    def liveness(self, payload: Payload) -> list[Output]:
        item = Input("liveness", payload, LIVENESS_PARTITION, next(self._offsets))
        return self.engine.on_liveness(str(payload["id"]), item)

    def session(self, node: str, payload: Payload) -> list[Output]:
        item = Input("session", payload, SESSIONS_PARTITION, next(self._offsets))
        return self.engine.on_session(node, item)

    def sessions(self, node: str, payloads: Iterable[Payload]) -> list[Output]:
        return [out for payload in payloads for out in self.session(node, payload)]

    def advance(self, node: str, watermark: int) -> list[Output]:
        return self.engine.advance(node, watermark)


# -- reading outputs ----------------------------------------------------------------------------


def emits(outputs: Iterable[Output], stream: str | None = None) -> list[Emit]:
    return [o for o in outputs if isinstance(o, Emit) and stream in (None, o.stream)]


def rejects(outputs: Iterable[Output]) -> list[Reject]:
    return [o for o in outputs if isinstance(o, Reject)]


def events(outputs: Iterable[Output], stream: str | None = None) -> list[str]:
    return [str(e.body["event"]) for e in emits(outputs, stream)]


def codes(outputs: Iterable[Output]) -> list[str]:
    return [r.code for r in rejects(outputs)]


def validate(emit: Emit) -> None:
    """Raise if ``emit``'s body does not validate against its output schema."""
    compiled_validator(_SCHEMA_KIND[emit.stream], str(emit.body["event"]))(emit.body)
