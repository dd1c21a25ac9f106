"""What the simulator is asked to play, and what it reports having played."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

__all__ = [
    "FAULT_PRESETS",
    "Crash",
    "FaultRates",
    "SimConfig",
    "SimCounts",
    "SimRecord",
    "preset",
]

Role = Literal["liveness", "sessions"]
CrashKind = Literal["disconnect", "silent"]


class SimRecord(NamedTuple):
    """One input record: the topic role, the Kafka key, the value and the event timestamp."""

    role: Role
    key: str
    value: bytes
    timestamp: int


@dataclass(frozen=True, slots=True)
class FaultRates:
    """How often things go wrong. Node faults are per node per hour, malformed records per minute
    for the whole cluster; a node has at most one fault at a time."""

    crash_disconnect: float = 0.0
    crash_silent: float = 0.0
    blip: float = 0.0
    flap: float = 0.0
    planned_shutdown: float = 0.0
    malformed_per_min: float = 0.0
    #: share of a crashed node's sessions the application re-creates on another node (§10)
    recovery_share: float = 0.5
    #: mean seconds before a crashed or shut-down node comes back; 0 = it never does
    node_return_s: float = 30.0

    @property
    def node_faults_per_hour(self) -> float:
        return (
            self.crash_disconnect
            + self.crash_silent
            + self.blip
            + self.flap
            + self.planned_shutdown
        )


FAULT_PRESETS: dict[str, FaultRates] = {
    "none": FaultRates(),
    "default": FaultRates(
        crash_disconnect=1.0,
        crash_silent=0.5,
        blip=3.0,
        flap=0.5,
        planned_shutdown=0.5,
        malformed_per_min=0.5,
    ),
    "chaos": FaultRates(
        crash_disconnect=30.0,
        crash_silent=15.0,
        blip=60.0,
        flap=15.0,
        planned_shutdown=15.0,
        malformed_per_min=10.0,
        recovery_share=0.8,
        node_return_s=10.0,
    ),
}


def preset(name: str, *, heartbeat_timeout_ms: int) -> FaultRates:
    """A preset's rates; silence crashes only when the detector watches heartbeats."""
    rates = FAULT_PRESETS[name]
    return rates if heartbeat_timeout_ms > 0 else replace(rates, crash_silent=0.0)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """A simulated cluster. ``grace_ms`` and ``heartbeat_timeout_ms`` are the detector's settings
    (``MEDIACDR_GRACE_MS``, ``MEDIACDR_HEARTBEAT_TIMEOUT_MS``): the model needs them to keep a
    blip inside the grace window and to know when a crash is decided."""

    start_ms: int
    seed: int = 1
    nodes: int = 10
    duration_s: float = 60.0  # 0 = forever
    session_rate: float = 1.0  # new sessions per second
    mean_session_s: float = 120.0
    mean_participants: float = 3.0
    heartbeat_ms: int = 1000  # 0 = no heartbeats
    recording_share: float = 0.2
    broadcast_share: float = 0.1
    closed_by_server_share: float = 0.1
    signals_per_min: float = 1.0  # per session
    grace_ms: int = 3000
    heartbeat_timeout_ms: int = 0
    faults: FaultRates = field(default_factory=FaultRates)

    def check(self) -> None:
        """Raise ValueError for a cluster the detector would misjudge."""
        if self.nodes < 1:
            raise ValueError("at least one node")
        if self.duration_s < 0 or self.session_rate < 0 or self.mean_session_s <= 0:
            raise ValueError("duration and session rate must be ≥ 0, session length > 0")
        if self.mean_participants < 1:
            raise ValueError("at least one participant per session on average")
        if self.grace_ms < 500:
            raise ValueError("blips need a grace window of at least 500 ms")
        if self.heartbeat_timeout_ms > 0 and not 0 < self.heartbeat_ms < self.heartbeat_timeout_ms:
            raise ValueError(
                f"with a heartbeat timeout of {self.heartbeat_timeout_ms} ms the nodes must "
                f"heartbeat more often (heartbeat every {self.heartbeat_ms} ms)"
            )
        if self.faults.crash_silent > 0 and self.heartbeat_timeout_ms <= 0:
            raise ValueError(
                "silence crashes need heartbeats and the detector's heartbeat timeout "
                "(MEDIACDR_HEARTBEAT_TIMEOUT_MS > 0)"
            )
        rates = self.faults
        if min(rates.node_faults_per_hour, rates.malformed_per_min, rates.node_return_s) < 0:
            raise ValueError("fault rates must be ≥ 0")


@dataclass(frozen=True, slots=True)
class Crash:
    """An injected crash and when the detector must declare it (``timeOfDisconnection`` = *d*,
    ``nodeCrashed.timestamp`` = *D*)."""

    node: str
    kind: CrashKind
    disconnected_at: int
    deadline: int


@dataclass
class SimCounts:
    """What the model has generated so far."""

    records: Counter[str] = field(default_factory=Counter)  # by role
    sessions: int = 0  # sessionCreated, recoveries included
    recreated_sessions: int = 0  # sessionCreated of a crashed session's id on another node
    participants: int = 0
    recordings: int = 0
    broadcasts: int = 0
    signals: int = 0
    unplaced_sessions: int = 0  # arrivals while no node was running
    sessions_cut_by_crash: int = 0
    crashes_disconnect: int = 0
    crashes_silent: int = 0
    blips: int = 0  # single blips
    flaps: int = 0  # episodes of several blips
    flap_blips: int = 0  # blips inside flaps
    planned_shutdowns: int = 0
    node_recoveries: int = 0  # a crashed node reconnects: nodeRecovered
    node_restarts: int = 0  # a shut-down node reconnects
    malformed: Counter[str] = field(default_factory=Counter)  # by expected dead-letter code

    @property
    def crashes(self) -> int:
        return self.crashes_disconnect + self.crashes_silent

    @property
    def reconnections_in_grace(self) -> int:
        """Incidents the detector closes as `reconnected`."""
        return self.blips + self.flap_blips

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def summary(self) -> dict[str, int]:
        out = {k: v for k, v in vars(self).items() if isinstance(v, int)}
        out |= {f"records_{role}": n for role, n in sorted(self.records.items())}
        out |= {f"malformed_{code}": n for code, n in sorted(self.malformed.items())}
        return out | {"crashes": self.crashes, "malformed_total": self.malformed_total}
