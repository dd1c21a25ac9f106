"""The detector's Prometheus metrics (names are part of the contract; docs/OPERATIONS.md).

Per record the routers and the node agent call one of the functions below: a dict lookup for
the cached labelled child, then an increment or an observation; nothing else is allocated.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "CLOCK_SKEW",
    "CRASH_DECISION_DELAY",
    "DEADLETTERS",
    "DEAD_LETTER_EVENT",
    "EVENTS_IN",
    "EVENTS_OUT",
    "INVALID_EVENT",
    "MASS_DISCONNECTS",
    "OPEN_INCIDENTS",
    "RUNNING_NODES",
    "TABLE_RECOVERY",
    "crash_decided",
    "dead_lettered",
    "emitted",
    "received",
    "recovering_for",
]

#: ``event`` label of an input record rejected before its event name was known to be valid.
INVALID_EVENT = "invalid"
#: ``event`` label of a record written to the dead-letter topic (its ``ce_type``).
DEAD_LETTER_EVENT = "mediacdr.deadletter"

EVENTS_IN = Counter(
    "mediacdr_detector_events_in",
    "Input records read by the routers, by kind (liveness, session) and event name "
    f"('{INVALID_EVENT}' when the record is not a known event).",
    ["kind", "event"],
)
EVENTS_OUT = Counter(
    "mediacdr_detector_events_out",
    "Records the detector wrote, by output stream (cdr, nodes, notifications, deadletter) and "
    "event name.",
    ["stream", "event"],
)
DEADLETTERS = Counter(
    "mediacdr_deadletters",
    "Input records sent to the dead-letter topic, by error code (CONTRACT §11).",
    ["code"],
)
OPEN_INCIDENTS = Gauge(
    "mediacdr_open_incidents",
    "Media nodes in their grace window (disconnected, not yet reconnected or crashed), on the "
    "partitions this worker owns.",
)
CRASH_DECISION_DELAY = Histogram(
    "mediacdr_crash_decision_delay_seconds",
    "Wall-clock time nodeCrashed was sent − (grace deadline + allowed lateness) (CONTRACT R10).",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CLOCK_SKEW = Histogram(
    "mediacdr_producer_clock_skew_seconds",
    "Wall clock when a router read an accepted input record − the event's own timestamp "
    "(producer clock skew plus transport delay; negative when the producer's clock is ahead).",
    ["kind"],
    buckets=(-60, -10, -1, -0.25, -0.05, 0, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600),
)
RUNNING_NODES = Gauge(
    "mediacdr_running_nodes",
    "Media nodes running or in their grace window (not crashed, removed or shut down on purpose) "
    "on the partitions this worker owns, as last reported to the mass-disconnection watch.",
)
MASS_DISCONNECTS = Counter(
    "mediacdr_mass_disconnects",
    "Mass disconnections: more than MEDIACDR_MASS_DISCONNECT_SHARE of the running nodes "
    "disconnected within one grace window (a massDisconnect node fact each); counted by the one "
    "worker that holds the cluster-wide view.",
)

TABLE_RECOVERY = Gauge(
    "mediacdr_detector_table_recovery_seconds",
    "How long this worker has been restoring its tables from their changelogs after a "
    "rebalance (its streams wait meanwhile); 0 when it is not restoring.",
)


def recovering_for(recovery: Any, now: float) -> float:
    """Seconds Faust's table recovery (``app.tables.recovery``; None before Faust made it) has
    been running at ``now`` (``time.monotonic()``), 0 when it is not running."""
    started: float | None = getattr(recovery, "_recovery_started_at", None)
    if recovery is None or not recovery.in_recovery or started is None:
        return 0.0
    return max(0.0, now - started)


M = TypeVar("M", bound=MetricWrapperBase)


class _Children(Generic[M]):
    """Labelled children, looked up once per label values."""

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self.cache: dict[tuple[str, ...], M] = {}

    def get(self, *labels: str) -> M:
        child = self.cache.get(labels)
        if child is None:
            child = self.cache[labels] = self.metric.labels(*labels)
        return child


_in = _Children(EVENTS_IN)
_out = _Children(EVENTS_OUT)
_dead = _Children(DEADLETTERS)
_skew = _Children(CLOCK_SKEW)


def received(kind: str, event: str | None, skew_s: float | None) -> None:
    """An input record read by a router; ``event`` and ``skew_s`` only when it was accepted."""
    _in.get(kind, event or INVALID_EVENT).inc()
    if skew_s is not None:
        _skew.get(kind).observe(skew_s)


def emitted(stream: str, event: str) -> None:
    _out.get(stream, event).inc()


def dead_lettered(code: str) -> None:
    _dead.get(code).inc()
    _out.get("deadletter", DEAD_LETTER_EVENT).inc()


def crash_decided(delay_s: float) -> None:
    CRASH_DECISION_DELAY.observe(delay_s)
