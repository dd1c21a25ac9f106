"""Building realistic input records (OpenVidu webhook JSON plus liveness events) for tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClusterScript"]


@dataclass
class ClusterScript:
    """Appends (role, key, payload) records in the order a real cluster would emit them."""

    records: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def liveness(self, event: str, node: str, at: int, **extra: Any) -> ClusterScript:
        self.records.append(
            ("liveness", node, {"event": event, "timestamp": at, "id": node, **extra})
        )
        return self

    def session(self, event: str, session_id: str, at: int, **fields: Any) -> ClusterScript:
        payload = {"event": event, "timestamp": at, "sessionId": session_id, **fields}
        self.records.append(("sessions", session_id, payload))
        return self

    def create(self, session_id: str, node: str, at: int) -> ClusterScript:
        return self.session("sessionCreated", session_id, at, mediaNodeId=node)

    def join(self, session_id: str, connection: str, at: int) -> ClusterScript:
        return self.session(
            "participantJoined",
            session_id,
            at,
            connectionId=connection,
            location="Berlin, Germany",
            ip="37.122.145.190",
            platform="Chrome 85.0.4183.121 on Linux 64-bit",
            clientData=f"client {connection}",
            serverData="{'user': 'client1'}",
        )

    def publish(self, session_id: str, connection: str, at: int) -> ClusterScript:
        return self.session(
            "webrtcConnectionCreated",
            session_id,
            at,
            streamId=f"str_CAM_{connection}",
            connectionId=connection,
            connection="OUTBOUND",
            videoSource="CAMERA",
            videoFramerate=30,
            videoDimensions='{"width":1280,"height":720}',
            audioEnabled=True,
            videoEnabled=True,
        )

    def subscribe(self, session_id: str, receiver: str, sender: str, at: int) -> ClusterScript:
        return self.session(
            "webrtcConnectionCreated",
            session_id,
            at,
            streamId=f"str_CAM_{sender}",
            connectionId=receiver,
            connection="INBOUND",
            receivingFrom=sender,
            videoSource="CAMERA",
            videoFramerate=30,
            videoDimensions='{"width":1280,"height":720}',
            audioEnabled=True,
            videoEnabled=True,
        )

    def record(self, session_id: str, at: int) -> ClusterScript:
        return self.session(
            "recordingStatusChanged",
            session_id,
            at,
            startTime=at,
            duration=0,
            id=session_id,
            name="MyRecording",
            outputMode="INDIVIDUAL",
            hasAudio=True,
            hasVideo=True,
            size=0,
            status="started",
        )

    def broadcast(self, session_id: str, at: int) -> ClusterScript:
        return self.session(
            "broadcastStarted", session_id, at, broadcastUrl="rtmp://live.example.com/app/key"
        )

    def encoded(self, topic_of: dict[str, str]) -> list[tuple[str, bytes, bytes]]:
        return [
            (topic_of[role], key.encode(), json.dumps(payload).encode())
            for role, key, payload in self.records
        ]
