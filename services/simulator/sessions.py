"""The simulated sessions: participants, media connections, recordings, broadcasts, signals.

Every action first checks that its session is still the one open under that id (a crash or an
earlier end removes it, and the action then does nothing), so no record ever refers to a session
or connection the detector does not know (CONTRACT §11: no ``unknownSession``,
``unknownConnection`` or ``duplicate``). A session's ``recordingStatusChanged`` ``ready`` comes
before its ``sessionDestroyed`` when the session ends with it: later, the detector could only
dead-letter it (``unknownSession``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.simulator import payloads as p

if TYPE_CHECKING:
    from services.simulator.model import Cluster, SimNode

__all__ = ["SessionActions", "SimSession", "session_actions"]

_PEOPLE = (  # location, ip, platform
    ("Berlin, Germany", "37.122.145.190", "Chrome 124.0.6367.91 on Linux 64-bit"),
    ("Madrid, Spain", "83.45.201.17", "Firefox 125.0 on Windows 10 64-bit"),
    ("São Paulo, Brazil", "177.92.14.3", "Safari 17.4 on iOS 17.4.1"),
    ("Lyon, France", "90.112.40.86", "Chrome 123.0.6312.122 on Android 14"),
    ("unknown", "192.168.1.20", "Electron 29.3.0 on macOS 14.4"),
)
_NAMES = ("Alice", "Bob", "Chen", "Dalia", "Emeka", "Fatima", "Gustavo", "Hana", "Ivan", "Jo")


@dataclass
class Joined:
    person: p.Person
    joined: int
    outbound: p.Payload | None = None


@dataclass
class SimSession:
    sid: str
    node: SimNode
    created: int
    end_at: int
    people: dict[str, Joined] = field(default_factory=dict)
    inbound: dict[tuple[str, str], p.Payload] = field(default_factory=dict)  # (receiver, sender)
    recording: p.Payload | None = None
    recordings: int = 0
    broadcast: p.Payload | None = None


def session_actions(cluster: Cluster) -> SessionActions:
    return SessionActions(cluster)


class SessionActions:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    def _alive(self, s: SimSession) -> bool:
        return self.c.open() and self.c.sessions.get(s.sid) is s

    def _emit(self, body: p.Payload) -> None:
        self.c.emit("sessions", str(body["sessionId"]), body)

    # -- the life of a session ------------------------------------------------------------------

    def create(self, sid: str, node: SimNode) -> None:
        c, cfg, rng, now = self.c, self.c.config, self.c.rng, self.c.now
        lifetime = max(3000, round(rng.expovariate(1 / (cfg.mean_session_s * 1000))))
        s = SimSession(sid, node, now, now + lifetime)
        c.sessions[sid] = s
        node.sessions.append(sid)
        c.counts.sessions += 1
        self._emit(p.session_created(sid, now, node.id))
        c.at(now + rng.randint(100, 2000), self._join, s, True)
        for _ in range(poisson(rng, cfg.mean_participants - 1)):
            c.at(now + rng.randint(0, lifetime * 6 // 10), self._join, s, False)
        if rng.random() < cfg.closed_by_server_share:
            c.at(s.end_at, self._server_close, s)
        if rng.random() < cfg.recording_share:
            start = now + rng.randint(2000, max(2000, lifetime // 3))
            c.at(start, self._record, s)
            c.at(start + rng.randint(lifetime // 4, lifetime), self._stop_recording, s)
        if rng.random() < cfg.broadcast_share:
            start = now + rng.randint(1000, max(1000, lifetime // 2))
            c.at(start, self._broadcast, s)
            c.at(start + rng.randint(lifetime // 4, lifetime), self._stop_broadcast, s)
        for _ in range(poisson(rng, lifetime / 60_000 * cfg.signals_per_min)):
            c.at(now + rng.randint(0, lifetime), self._signal, s)

    def recreate(self, sid: str, crashed: str) -> None:
        """The application re-creates a crashed session, same id, on another node (§10)."""
        node = self.c.running_node(exclude=crashed)
        if not self.c.open() or sid in self.c.sessions or node is None:
            return
        self.c.counts.recreated_sessions += 1
        self.create(sid, node)

    def close(self, s: SimSession, reason: str) -> None:
        """The server ends the session: everyone out, then the session itself."""
        for cid in list(s.people):
            self._evict(s, cid, reason)
        self._finish(s, reason)

    def _finish(self, s: SimSession, reason: str) -> None:
        now = self.c.now
        if s.recording is not None:
            self._emit(p.recording_stopped(s.recording, now, reason))
            ready = p.recording_stopped(
                s.recording, now, reason, ready=True, size=_size(s.recording, now)
            )
            self._emit(ready)
            s.recording = None
        if s.broadcast is not None:
            self._emit(p.broadcast_stopped(s.broadcast, now, reason))
            s.broadcast = None
        self._emit(p.session_destroyed(s.sid, now, s.created, reason))
        del self.c.sessions[s.sid]
        s.node.sessions.remove(s.sid)

    def _server_close(self, s: SimSession) -> None:
        if self._alive(s):
            self.close(s, "sessionClosedByServer")

    # -- participants ---------------------------------------------------------------------------

    def _join(self, s: SimSession, host: bool) -> None:
        if not self._alive(s):
            return
        c, rng, now = self.c, self.c.rng, self.c.now
        cid = c.new_id("con_")
        location, ip, platform = rng.choice(_PEOPLE)
        name = rng.choice(_NAMES)
        person = p.Person(
            location, ip, platform, f'{{"name":"{name}"}}', f"{{'user': '{name.lower()}'}}"
        )
        s.people[cid] = Joined(person, now)
        c.counts.participants += 1
        self._emit(p.participant_joined(s.sid, cid, now, person))
        c.at(now + rng.randint(300, 1500), self._publish, s, cid)
        for sender, joined in s.people.items():
            if joined.outbound is not None:
                c.at(now + rng.randint(100, 600), self._subscribe, s, cid, sender)
        span = s.end_at - s.created
        leave = s.end_at if host else rng.randint(now + 1000, max(now + 1000, s.end_at + span // 2))
        c.at(leave, self._leave, s, cid)

    def _publish(self, s: SimSession, cid: str) -> None:
        joined = s.people.get(cid) if self._alive(s) else None
        if joined is None or joined.outbound is not None:
            return
        c, rng = self.c, self.c.rng
        video, screen = rng.random() < 0.9, rng.random() < 0.1
        kind = "SCR" if video and screen else "CAM"
        stream = f"str_{kind}_{c.new_id('', 4)}_{cid}"
        source = "SCREEN" if kind == "SCR" else "CAMERA"
        joined.outbound = p.outbound_created(s.sid, cid, c.now, stream, video=video, source=source)
        self._emit(joined.outbound)
        for receiver in s.people:
            if receiver != cid:
                c.at(c.now + rng.randint(100, 600), self._subscribe, s, receiver, cid)

    def _subscribe(self, s: SimSession, receiver: str, sender: str) -> None:
        if not self._alive(s) or receiver not in s.people or (receiver, sender) in s.inbound:
            return
        joined = s.people.get(sender)
        if joined is None or joined.outbound is None:
            return
        out = joined.outbound
        video = bool(out["videoEnabled"])
        source = str(out.get("videoSource", "CAMERA"))
        body = p.inbound_created(
            s.sid, receiver, sender, self.c.now, str(out["streamId"]), video=video, source=source
        )
        s.inbound[(receiver, sender)] = body
        self._emit(body)

    def _leave(self, s: SimSession, cid: str) -> None:
        if not self._alive(s) or cid not in s.people:
            return
        reason = "networkDisconnect" if self.c.rng.random() < 0.05 else "disconnect"
        self._evict(s, cid, reason)
        if not s.people:
            self._finish(s, "lastParticipantLeft")

    def _evict(self, s: SimSession, cid: str, reason: str) -> None:
        """OpenVidu's order: others' subscriptions to it, its subscriptions, its publisher,
        then participantLeft."""
        now = self.c.now
        order = list(s.people)
        theirs = [k for k in s.inbound if k[1] == cid]
        own = [k for k in s.inbound if k[0] == cid]
        for key in sorted(theirs, key=lambda k: order.index(k[0])) + sorted(
            own, key=lambda k: order.index(k[1])
        ):
            self._emit(p.connection_destroyed(s.inbound.pop(key), now, reason))
        joined = s.people.pop(cid)
        if joined.outbound is not None:
            self._emit(p.connection_destroyed(joined.outbound, now, reason))
        self._emit(p.participant_left(s.sid, cid, now, joined.joined, reason, joined.person))

    # -- recordings, broadcasts, signals --------------------------------------------------------

    def _record(self, s: SimSession) -> None:
        if not self._alive(s) or s.recording is not None or not s.people:
            return
        rid = s.sid if s.recordings == 0 else f"{s.sid}-{s.recordings}"
        s.recordings += 1
        self.c.counts.recordings += 1
        s.recording = p.recording_started(
            s.sid, self.c.now, rid, composed=self.c.rng.random() < 0.5
        )
        self._emit(s.recording)

    def _stop_recording(self, s: SimSession) -> None:
        if not self._alive(s) or s.recording is None:
            return
        started, s.recording = s.recording, None
        self._emit(p.recording_stopped(started, self.c.now, "recordingStoppedByServer"))
        self.c.at(self.c.now + self.c.rng.randint(500, 3000), self._recording_ready, s, started)

    def _recording_ready(self, s: SimSession, started: p.Payload) -> None:
        if self._alive(s):
            body = p.recording_stopped(
                started,
                self.c.now,
                "recordingStoppedByServer",
                ready=True,
                size=_size(started, self.c.now),
            )
            self._emit(body)

    def _broadcast(self, s: SimSession) -> None:
        if not self._alive(s) or s.broadcast is not None or not s.people:
            return
        self.c.counts.broadcasts += 1
        url = f"rtmp://live.example.com/app/{s.sid}"
        s.broadcast = p.broadcast_started(s.sid, self.c.now, url)
        self._emit(s.broadcast)

    def _stop_broadcast(self, s: SimSession) -> None:
        if self._alive(s) and s.broadcast is not None:
            self._emit(p.broadcast_stopped(s.broadcast, self.c.now, "broadcastStoppedByServer"))
            s.broadcast = None

    def _signal(self, s: SimSession) -> None:
        if not self._alive(s) or not s.people:
            return
        rng, people = self.c.rng, list(s.people)
        sender = rng.choice(people) if rng.random() < 0.9 else None
        to = [cid for cid in people if cid != sender]
        if not to:
            return
        name = rng.choice(_NAMES)
        data = f"{{'message':'Hello from {name}!','name':'{name}'}}"
        self.c.counts.signals += 1
        self._emit(p.signal_sent(s.sid, self.c.now, sender, to, data, "my-chat"))


def _size(started: p.Payload, now: int) -> int:
    """A plausible file size: about 31 kB per second recorded (250 kbit/s)."""
    return max(1, (now - int(started["startTime"])) * 31)


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; fine for the small means the model uses."""
    limit, k, product = math.exp(-min(mean, 50.0)), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k
