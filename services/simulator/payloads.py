"""Input payloads as a media-server cluster emits them (CONTRACT §3, §4): one builder per event.

Shared by the simulator's model, the `make up` sample story and the tests' cluster scripts, so
every producer of test and demo traffic writes the same wire format. Session events are OpenVidu
webhook bodies without ``uniqueSessionId``/``participantId`` (the detector adds them);
``sessionCreated`` carries the ``mediaNodeId`` extension.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Payload",
    "Person",
    "broadcast_started",
    "broadcast_stopped",
    "connection_destroyed",
    "encode",
    "inbound_created",
    "node_connected",
    "node_disconnected",
    "node_heartbeat",
    "node_status_changed",
    "outbound_created",
    "participant_joined",
    "participant_left",
    "recording_started",
    "recording_stopped",
    "session_created",
    "session_destroyed",
    "signal_sent",
]

Payload = dict[str, Any]

VIDEO_1280 = '{"width":1280,"height":720}'


def encode(payload: Payload) -> bytes:
    """Compact UTF-8 JSON, non-ASCII kept as is (as OpenVidu's Gson writes it)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- liveness (CONTRACT §3) ---------------------------------------------------------------------


def node_connected(node: str, ts: int, **description: Any) -> Payload:
    """``description``: any of environmentId, ip, uri, clusterId, load."""
    return {"event": "nodeConnected", "timestamp": ts, "id": node, **description}


def node_disconnected(node: str, ts: int) -> Payload:
    return {"event": "nodeDisconnected", "timestamp": ts, "id": node}


def node_heartbeat(node: str, ts: int, load: float | None = None) -> Payload:
    body: Payload = {"event": "nodeHeartbeat", "timestamp": ts, "id": node}
    if load is not None:
        body["load"] = load
    return body


def node_status_changed(
    node: str, ts: int, old: str | None, new: str, description: Payload
) -> Payload:
    """OpenVidu Pro's ``mediaNodeStatusChanged``; every description field is present (or null)."""
    return {
        "event": "mediaNodeStatusChanged",
        "timestamp": ts,
        "id": node,
        "environmentId": description.get("environmentId"),
        "ip": description.get("ip"),
        "uri": description.get("uri"),
        "clusterId": description.get("clusterId"),
        "newStatus": new,
        "oldStatus": old,
    }


# -- sessions (CONTRACT §4) ---------------------------------------------------------------------


def session_created(sid: str, ts: int, node: str) -> Payload:
    return {"event": "sessionCreated", "timestamp": ts, "sessionId": sid, "mediaNodeId": node}


def session_destroyed(sid: str, ts: int, created: int, reason: str) -> Payload:
    return {
        "event": "sessionDestroyed",
        "timestamp": ts,
        "sessionId": sid,
        "startTime": created,
        "duration": _seconds(ts - created),
        "reason": reason,
    }


@dataclass(frozen=True, slots=True)
class Person:
    """What OpenVidu reports about a participant's client."""

    location: str = "Berlin, Germany"
    ip: str = "37.122.145.190"
    platform: str = "Chrome 85.0.4183.121 on Linux 64-bit"
    client_data: str = ""
    server_data: str = ""

    def fields(self) -> Payload:
        return {
            "location": self.location,
            "ip": self.ip,
            "platform": self.platform,
            "clientData": self.client_data,
            "serverData": self.server_data,
        }


def participant_joined(sid: str, cid: str, ts: int, person: Person) -> Payload:
    return {
        "event": "participantJoined",
        "timestamp": ts,
        "sessionId": sid,
        "connectionId": cid,
        **person.fields(),
    }


def participant_left(
    sid: str, cid: str, ts: int, joined: int, reason: str, person: Person
) -> Payload:
    return {
        "event": "participantLeft",
        "timestamp": ts,
        "sessionId": sid,
        "startTime": joined,
        "duration": _seconds(ts - joined),
        "reason": reason,
        "connectionId": cid,
        **person.fields(),
    }


def _media(video: bool, source: str = "CAMERA") -> Payload:
    if not video:
        return {"audioEnabled": True, "videoEnabled": False}
    return {
        "videoSource": source,
        "videoFramerate": 30,
        "videoDimensions": VIDEO_1280,
        "audioEnabled": True,
        "videoEnabled": True,
    }


def outbound_created(
    sid: str, cid: str, ts: int, stream_id: str, *, video: bool = True, source: str = "CAMERA"
) -> Payload:
    """``cid`` publishes the stream ``stream_id``."""
    return {
        "event": "webrtcConnectionCreated",
        "timestamp": ts,
        "sessionId": sid,
        "streamId": stream_id,
        "connectionId": cid,
        "connection": "OUTBOUND",
        **_media(video, source),
    }


def inbound_created(
    sid: str,
    cid: str,
    sender: str,
    ts: int,
    stream_id: str,
    *,
    video: bool = True,
    source: str = "CAMERA",
) -> Payload:
    """``cid`` receives ``sender``'s stream ``stream_id``."""
    return {
        "event": "webrtcConnectionCreated",
        "timestamp": ts,
        "sessionId": sid,
        "streamId": stream_id,
        "connectionId": cid,
        "connection": "INBOUND",
        "receivingFrom": sender,
        **_media(video, source),
    }


def connection_destroyed(created: Payload, ts: int, reason: str) -> Payload:
    """The ``webrtcConnectionDestroyed`` closing the connection ``created`` opened."""
    return {
        **created,
        "event": "webrtcConnectionDestroyed",
        "timestamp": ts,
        "startTime": created["timestamp"],
        "duration": _seconds(ts - int(created["timestamp"])),
        "reason": reason,
    }


def recording_started(
    sid: str, ts: int, rid: str, *, composed: bool = False, name: str = "MyRecording"
) -> Payload:
    """INDIVIDUAL (no layout fields) or COMPOSED with video; size and duration 0."""
    body: Payload = {
        "event": "recordingStatusChanged",
        "timestamp": ts,
        "sessionId": sid,
        "startTime": ts,
        "duration": 0,
        "id": rid,
        "name": name,
        "outputMode": "COMPOSED" if composed else "INDIVIDUAL",
        "hasAudio": True,
        "hasVideo": True,
        "size": 0,
        "status": "started",
    }
    if composed:
        body |= {"resolution": "1280x720", "recordingLayout": "BEST_FIT", "frameRate": 25}
    return body


def recording_stopped(
    started: Payload, ts: int, reason: str, *, ready: bool = False, size: int = 0
) -> Payload:
    """``stopped`` (size and duration 0) or ``ready`` (size and decimal duration > 0)."""
    body: Payload = {**started, "timestamp": ts, "reason": reason, "status": "stopped"}
    if ready:
        seconds = round(max(ts - int(started["startTime"]), 100) / 1000, 1)
        body |= {"status": "ready", "duration": seconds, "size": max(size, 1)}
    return body


def broadcast_started(sid: str, ts: int, url: str) -> Payload:
    return {"event": "broadcastStarted", "timestamp": ts, "sessionId": sid, "broadcastUrl": url}


def broadcast_stopped(started: Payload, ts: int, reason: str) -> Payload:
    return {
        **started,
        "event": "broadcastStopped",
        "timestamp": ts,
        "startTime": started["timestamp"],
        "duration": _seconds(ts - int(started["timestamp"])),
        "reason": reason,
    }


def signal_sent(
    sid: str, ts: int, sender: str | None, to: list[str], data: str, kind: str = "chat"
) -> Payload:
    return {
        "event": "signalSent",
        "timestamp": ts,
        "sessionId": sid,
        "from": sender,
        "to": to,
        "type": kind,
        "data": data,
    }


def _seconds(ms: int) -> int:
    return max(ms, 0) // 1000
