"""A simulated media-server cluster: a seeded discrete-event simulation of input records.

Pure: no Kafka, no clock, no I/O; ``random.Random`` seeded from the config is the only source of
chance, and nothing iterates a set, so the same config gives the same bytes. Records come out in
timestamp order; the feeder (`services.simulator.run`) decides when to send them.

The story: nodes connect and heartbeat; sessions arrive as a Poisson process and go to the
running node with the fewest sessions (ties: the lowest node number, as a load balancer
would); participants join, publish, subscribe to each other, chat, leave (connections closed
first, as OpenVidu does); some sessions record or broadcast. Faults (`FaultRates`) strike nodes:
crashes by disconnection or by silence, blips and flaps inside the grace window, planned
shutdowns. Each action writes its records at one instant, so a record never depends on one
written later. Session activity stops at the crash instant, so nothing reaches the detector
stamped after the deadline; a share of the sessions is re-created on another node after the
deadline, and the node may come back. After ``duration_s`` no new activity starts; fault
episodes under way finish, and heartbeats go on until every injected crash has been due for a
grace window (``Simulation.horizon_ms``).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.simulator import payloads as p
from services.simulator.config import Crash, CrashKind, Role, SimConfig, SimCounts, SimRecord
from services.simulator.sessions import SimSession, session_actions

__all__ = ["Simulation"]

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class Simulation:
    """Iterate it for the records; ``counts`` and ``crashes`` describe what was generated.

    ``horizon_ms`` (once iterated): the later of the last record and the last crash deadline. A
    detector whose event time has reached it has decided every injected crash; nodes still up
    heartbeat until then, so it is before any silence the end of the run itself causes.
    """

    def __init__(self, config: SimConfig) -> None:
        config.check()
        self.config = config
        self.counts = SimCounts()
        self.crashes: list[Crash] = []
        self.horizon_ms = config.start_ms

    def __iter__(self) -> Iterator[SimRecord]:
        yield from Cluster(self).play()


@dataclass
class SimNode:
    id: str
    number: int
    description: dict[str, Any]
    state: str = "down"  # down | up | blip | draining | crashed | off
    link: int = 0  # bumped at every (dis)connection: stale heartbeats stop
    sessions: list[str] = field(default_factory=list)
    last_liveness: int = 0
    heartbeats: int = 0  # since the last connection


class Cluster:
    """One run of the model."""

    def __init__(self, sim: Simulation) -> None:
        self.sim, self.config, self.counts = sim, sim.config, sim.counts
        self.rng = random.Random(sim.config.seed)
        self.ids = random.Random(f"{sim.config.seed}/{sim.config.start_ms}")
        self.now = sim.config.start_ms
        start, duration = sim.config.start_ms, sim.config.duration_s
        self.end: int | None = start + round(duration * 1000) if duration > 0 else None
        self.tail = start  # heartbeats run at least until here (after the end)
        self._queue: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.out: list[SimRecord] = []
        self.nodes = [
            SimNode(f"media_sim-{n}", n, _describe(n)) for n in range(1, sim.config.nodes + 1)
        ]
        self.sessions: dict[str, SimSession] = {}
        self._used_ids: dict[str, None] = {}
        self.actions = session_actions(self)

    # -- the event loop -----------------------------------------------------------------------

    def play(self) -> Iterator[SimRecord]:
        for node in self.nodes:
            self.at(self.now + self.rng.randint(0, 500), self._connect, node)
        if self.config.session_rate > 0:
            self.at(self.now + 1000 + self._exp(1000 / self.config.session_rate), self._arrival)
        if self.config.faults.malformed_per_min > 0:
            self.at(self.now + self._exp(60_000 / self.config.faults.malformed_per_min), self._bad)
        while self._queue:
            self.now, _, action, args = heapq.heappop(self._queue)
            action(*args)
            for record in self.out:
                self.counts.records[record.role] += 1
                self.sim.horizon_ms = max(self.sim.horizon_ms, record.timestamp)
                yield record
            self.out.clear()
        deadlines = [crash.deadline for crash in self.sim.crashes]
        self.sim.horizon_ms = max([self.sim.horizon_ms, *deadlines])

    def at(self, t: int, action: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (max(t, self.now), next(self._seq), action, args))

    def open(self) -> bool:
        """Whether new activity may start now."""
        return self.end is None or self.now <= self.end

    def emit(self, role: Role, key: str, body: p.Payload) -> None:
        self.out.append(SimRecord(role, key, p.encode(body), self.now))

    def liveness(self, node: SimNode, body: p.Payload) -> None:
        node.last_liveness = self.now
        self.emit("liveness", node.id, body)

    def new_id(self, prefix: str, length: int = 10) -> str:
        while True:
            candidate = prefix + "".join(self.ids.choices(_ALNUM, k=length))
            if candidate not in self._used_ids:
                self._used_ids[candidate] = None
                return candidate

    def _exp(self, mean_ms: float) -> int:
        return max(1, round(self.rng.expovariate(1 / mean_ms)))

    def _keep_beating_until(self, t: int) -> None:
        self.tail = max(self.tail, t + self.config.grace_ms)

    # -- nodes ----------------------------------------------------------------------------------

    def _connect(self, node: SimNode) -> None:
        node.state, node.link, node.heartbeats = "up", node.link + 1, 0
        load = self._load(node)
        self.liveness(node, p.node_connected(node.id, self.now, **node.description, load=load))
        if self.config.heartbeat_ms > 0:
            phase = self.rng.randint(1, self.config.heartbeat_ms)
            self.at(self.now + phase, self._heartbeat, node, node.link)
        rate = self.config.faults.node_faults_per_hour
        if rate > 0:
            self.at(self.now + self._exp(3_600_000 / rate), self._fault, node, node.link)

    def _heartbeat(self, node: SimNode, link: int) -> None:
        if node.link != link or (self.end is not None and self.now > max(self.end, self.tail)):
            return
        node.heartbeats += 1
        self.liveness(node, p.node_heartbeat(node.id, self.now, self._load(node)))
        self.at(self.now + self.config.heartbeat_ms, self._heartbeat, node, link)

    def _load(self, node: SimNode) -> float:
        return min(100.0, round(3 + 6 * len(node.sessions) + self.rng.uniform(0, 4), 1))

    def running_node(self, exclude: str | None = None) -> SimNode | None:
        """The running node with the fewest sessions, ties by number."""
        up = [n for n in self.nodes if n.state == "up" and n.id != exclude]
        return min(up, key=lambda n: (len(n.sessions), n.number), default=None)

    def _reconnect(self, node: SimNode, after: str) -> None:
        if not self.open() or node.state not in ("crashed", "off"):
            return
        if after == "crash":
            self.counts.node_recoveries += 1
        else:
            self.counts.node_restarts += 1
        self._connect(node)

    def _schedule_return(self, node: SimNode, earliest: int, after: str) -> None:
        mean_s = self.config.faults.node_return_s
        if mean_s > 0:
            self.at(earliest + self._exp(mean_s * 1000), self._reconnect, node, after)

    # -- faults ---------------------------------------------------------------------------------

    def _fault(self, node: SimNode, link: int) -> None:
        if node.link != link or not self.open():
            return  # the node reconnected since: its new life draws its own faults
        rates = self.config.faults
        self.at(
            self.now + self._exp(3_600_000 / rates.node_faults_per_hour), self._fault, node, link
        )
        if node.state != "up":
            return
        kinds = {
            "crash_disconnect": rates.crash_disconnect,
            "crash_silent": rates.crash_silent if node.heartbeats > 0 else 0.0,
            "blip": rates.blip,
            "flap": rates.flap,
            "planned_shutdown": rates.planned_shutdown,
        }
        if sum(kinds.values()) <= 0:
            return
        kind = self.rng.choices(list(kinds), weights=list(kinds.values()))[0]
        getattr(self, f"_{kind}")(node)

    def _crash_disconnect(self, node: SimNode) -> None:
        node.state, node.link = "crashed", node.link + 1
        self.liveness(node, p.node_disconnected(node.id, self.now))
        self.counts.crashes_disconnect += 1
        self._crashed(node, "disconnect", self.now)

    def _crash_silent(self, node: SimNode) -> None:
        """The node hangs: no record at all; the detector notices the missing heartbeats."""
        node.state, node.link = "crashed", node.link + 1
        self.counts.crashes_silent += 1
        self._crashed(node, "silent", node.last_liveness + self.config.heartbeat_timeout_ms)

    def _crashed(self, node: SimNode, kind: CrashKind, disconnected_at: int) -> None:
        deadline = disconnected_at + self.config.grace_ms
        self.sim.crashes.append(Crash(node.id, kind, disconnected_at, deadline))
        self._keep_beating_until(deadline)
        share = self.config.faults.recovery_share
        for sid in node.sessions:
            del self.sessions[sid]  # its scheduled activity finds it gone
            self.counts.sessions_cut_by_crash += 1
            if self.rng.random() < share:
                delay = self.rng.randint(1000, 10_000)
                self.at(deadline + delay, self.actions.recreate, sid, node.id)
        node.sessions = []
        self._schedule_return(node, deadline + 1000, "crash")

    def _blip(self, node: SimNode) -> None:
        self.counts.blips += 1
        self._disconnect_briefly(node, int(self.config.grace_ms * 0.8), then=None)

    def _flap(self, node: SimNode) -> None:
        blips = self.rng.randint(3, 5)
        self.counts.flaps += 1
        self.counts.flap_blips += blips
        self._disconnect_briefly(node, int(self.config.grace_ms * 0.6), then=blips - 1)

    def _disconnect_briefly(self, node: SimNode, longest: int, then: int | None) -> None:
        node.state, node.link = "blip", node.link + 1
        self.liveness(node, p.node_disconnected(node.id, self.now))
        back = self.now + self.rng.randint(200, longest)
        self._keep_beating_until(back)
        self.at(back, self._back_in_grace, node, longest, then)

    def _back_in_grace(self, node: SimNode, longest: int, then: int | None) -> None:
        node.state, node.link = "up", node.link + 1
        self.liveness(node, p.node_connected(node.id, self.now, **node.description))
        if self.config.heartbeat_ms > 0:
            self.at(self.now + self.config.heartbeat_ms, self._heartbeat, node, node.link)
        if then:  # a flap: down again soon
            self.at(self.now + self.rng.randint(300, 1500), self._flap_again, node, longest, then)
        else:
            self._resume_faults(node)

    def _flap_again(self, node: SimNode, longest: int, then: int) -> None:
        self._disconnect_briefly(node, longest, then - 1)

    def _resume_faults(self, node: SimNode) -> None:
        rate = self.config.faults.node_faults_per_hour
        if rate > 0 and self.open():
            self.at(self.now + self._exp(3_600_000 / rate), self._fault, node, node.link)

    def _planned_shutdown(self, node: SimNode) -> None:
        """OpenVidu Pro's removal: terminating, sessions closed, terminated, disconnected."""
        self.counts.planned_shutdowns += 1
        node.state = "draining"
        status = p.node_status_changed(
            node.id, self.now, "running", "terminating", node.description
        )
        self.liveness(node, status)
        self._keep_beating_until(self.now + 3000)
        self.at(self.now + self.rng.randint(200, 800), self._close_all, node)

    def _close_all(self, node: SimNode) -> None:
        for sid in list(node.sessions):
            self.actions.close(self.sessions[sid], "mediaServerDisconnect")
        self.at(self.now + 1500, self._terminated, node)

    def _terminated(self, node: SimNode) -> None:
        status = p.node_status_changed(
            node.id, self.now, "terminating", "terminated", node.description
        )
        self.liveness(node, status)
        self.at(self.now + 300, self._off, node)

    def _off(self, node: SimNode) -> None:
        node.state, node.link = "off", node.link + 1
        self.liveness(node, p.node_disconnected(node.id, self.now))
        self._schedule_return(node, self.now + 1000, "shutdown")

    # -- sessions and bad input -----------------------------------------------------------------

    def _arrival(self) -> None:
        if not self.open():
            return
        self.at(self.now + self._exp(1000 / self.config.session_rate), self._arrival)
        node = self.running_node()
        if node is None:
            self.counts.unplaced_sessions += 1
            return
        self.actions.create(self.new_id("ses_"), node)

    def _bad(self) -> None:
        if not self.open():
            return
        self.at(self.now + self._exp(60_000 / self.config.faults.malformed_per_min), self._bad)
        code = self.rng.choice(_MALFORMED_CODES)
        role: Role = self.rng.choice(["liveness", "sessions"])
        key = self.new_id("media_bad-" if role == "liveness" else "ses_bad", 6)
        self.counts.malformed[code] += 1
        self.out.append(SimRecord(role, key, _malformed(code, role, key, self.now), self.now))


_MALFORMED_CODES = (
    "invalidJson",
    "unknownEvent",
    "schemaViolation",
    "timestampOutOfRange",
    "keyMismatch",
)


def _malformed(code: str, role: Role, key: str, now: int) -> bytes:
    """A record the detector must dead-letter with ``code`` (CONTRACT §11)."""
    if role == "liveness":
        good = p.node_heartbeat(key, now, 12.5)
        bad = {
            "schemaViolation": {**good, "load": 250},
            "unknownEvent": {**good, "event": "nodeExploded"},
        }
    else:
        good = p.session_created(key, now, "media_sim-1")
        bad = {
            "schemaViolation": {**good, "mediaNodeId": ""},
            "unknownEvent": {**good, "event": "sessionExploded"},
        }
    if code == "invalidJson":
        return p.encode(good)[:-7]
    if code == "timestampOutOfRange":
        return p.encode({**good, "timestamp": 946_684_799_999})
    if code == "keyMismatch":
        field_name = "id" if role == "liveness" else "sessionId"
        return p.encode({**good, field_name: key + "-other"})
    return p.encode(bad[code])


def _describe(n: int) -> dict[str, Any]:
    ip = f"10.0.{n // 250}.{n % 250 + 2}"
    return {
        "environmentId": f"i-{n:017x}",
        "ip": ip,
        "uri": f"ws://{ip}:8888/kurento",
        "clusterId": "SIM_CLUSTER",
    }
