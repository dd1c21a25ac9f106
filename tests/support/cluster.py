"""Building realistic input records (OpenVidu webhook JSON plus liveness events) for tests,
with the simulator's payload builders (services/simulator/payloads.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from services.simulator import payloads as p

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
        return self._add(p.session_created(session_id, at, node))

    def join(self, session_id: str, connection: str, at: int) -> ClusterScript:
        person = p.Person(client_data=f"client {connection}", server_data="{'user': 'client1'}")
        return self._add(p.participant_joined(session_id, connection, at, person))

    def leave(self, session_id: str, connection: str, at: int, joined: int) -> ClusterScript:
        person = p.Person(client_data=f"client {connection}", server_data="{'user': 'client1'}")
        return self._add(
            p.participant_left(session_id, connection, at, joined, "disconnect", person)
        )

    def destroy(self, session_id: str, at: int, created: int) -> ClusterScript:
        return self._add(p.session_destroyed(session_id, at, created, "lastParticipantLeft"))

    def publish(self, session_id: str, connection: str, at: int) -> ClusterScript:
        return self._add(p.outbound_created(session_id, connection, at, f"str_CAM_{connection}"))

    def subscribe(self, session_id: str, receiver: str, sender: str, at: int) -> ClusterScript:
        stream = f"str_CAM_{sender}"
        return self._add(p.inbound_created(session_id, receiver, sender, at, stream))

    def record(self, session_id: str, at: int) -> ClusterScript:
        return self._add(p.recording_started(session_id, at, session_id))

    def broadcast(self, session_id: str, at: int) -> ClusterScript:
        return self._add(p.broadcast_started(session_id, at, "rtmp://live.example.com/app/key"))

    def _add(self, payload: dict[str, Any]) -> ClusterScript:
        self.records.append(("sessions", str(payload["sessionId"]), payload))
        return self

    def encoded(self, topic_of: dict[str, str]) -> list[tuple[str, bytes, bytes]]:
        return [
            (topic_of[role], key.encode(), json.dumps(payload).encode())
            for role, key, payload in self.records
        ]
