"""Event-time progress (CONTRACT §5 R8), carried in-band through the internal topic.

Every tick each router writes one *mark* to every internal partition: for each input partition
it owns, the event time below which everything has been forwarded — the highest timestamp it
forwarded, or the wall time at which it had read up to the end offset, minus the allowed
lateness. Because a mark follows, on its partition, every record forwarded before it, the node
agent may decide a deadline once the lowest mark that concerns the node has passed it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "MARK_KIND",
    "NOTHING_KNOWN",
    "OutageGuard",
    "PartitionProgress",
    "Watermarks",
    "decode_mark",
    "encode_mark",
    "source_key",
]

MARK_KIND = "mark"


#: a mark below every event time: nothing is known of the partition yet
NOTHING_KNOWN = -(2**62)


def source_key(role: str, partition: int) -> str:
    """``L3`` is liveness partition 3, ``S7`` sessions partition 7."""
    return f"{role[0].upper()}{partition}"


def encode_mark(marks: Mapping[str, int]) -> bytes:
    return json.dumps({"kind": MARK_KIND, "marks": dict(marks)}, separators=(",", ":")).encode()


def decode_mark(doc: Mapping[str, object]) -> dict[str, int]:
    marks = doc["marks"]
    assert isinstance(marks, dict)
    return {str(k): int(v) for k, v in marks.items()}


@dataclass(slots=True)
class PartitionProgress:
    """What a router knows of one input partition it owns (in memory; rebuilt after a rebalance)."""

    next_offset: int = 0
    max_timestamp: int | None = None
    #: wall ms of the last change of ``next_offset`` (or of the first look at the partition)
    moved_at: int | None = None

    def forwarded(self, offset: int, timestamp: int | None) -> None:
        self.next_offset = max(self.next_offset, offset + 1)
        self.moved_at = None
        if timestamp is not None and (self.max_timestamp is None or timestamp > self.max_timestamp):
            self.max_timestamp = timestamp

    def stalled(self, resumed: int, end_offset: int, wall_ms: int, after_ms: int) -> bool:
        """Records wait (below ``end_offset``) but nothing has been handed to us for
        ``after_ms``: Faust drops records it fetched across a rebalance without seeking back."""
        if max(self.next_offset, resumed) >= end_offset:
            self.moved_at = None
            return False
        if self.moved_at is None:
            self.moved_at = wall_ms
            return False
        if wall_ms - self.moved_at < after_ms:
            return False
        self.moved_at = wall_ms
        return True

    def mark(
        self,
        resumed: int,
        end_offset: int,
        wall_ms: int,
        lateness_ms: int,
        trust_wall_clock: bool = True,
    ) -> int | None:
        """The event time below which this partition has delivered everything, if known.

        ``resumed`` is the partition's durable read position (``services.detector.positions``):
        records before it were forwarded, by this worker or a previous owner. (Not the group's
        committed offset: Faust can commit past records it skipped, which are read again.)
        ``trust_wall_clock`` is False while the broker was just unreachable: producers may
        still hold records stamped during the outage, so reaching the end offsets says nothing
        about the wall clock.
        """
        candidates = []
        if self.max_timestamp is not None:
            candidates.append(self.max_timestamp - lateness_ms)
        if trust_wall_clock and max(self.next_offset, resumed) >= end_offset:
            candidates.append(wall_ms - lateness_ms)
        return max(candidates) if candidates else None


@dataclass(slots=True)
class Watermarks:
    """The node agent's view, per internal partition: the latest mark of every input partition."""

    session_partitions: int
    marks: dict[str, int] = field(default_factory=dict)
    #: the lowest sessions mark, recomputed on each update (read for every pending node)
    sessions_floor: int | None = None

    def update(self, marks: Mapping[str, int]) -> None:
        for key, value in marks.items():
            if value > self.marks.get(key, value - 1):
                self.marks[key] = value
        sessions = [
            self.marks.get(source_key("sessions", p)) for p in range(self.session_partitions)
        ]
        self.sessions_floor = (
            None if None in sessions else min(v for v in sessions if v is not None)
        )

    def liveness_until(self, liveness_partition: int | None) -> int | None:
        """What ``NodeEngine.on_session`` needs: the mark of the node's liveness partition
        (``NOTHING_KNOWN`` before its first; None when the node has no liveness partition yet,
        so there is no liveness to wait for)."""
        if liveness_partition is None:
            return None
        return self.marks.get(source_key("liveness", liveness_partition), NOTHING_KNOWN)

    def for_node(self, liveness_partition: int | None) -> int | None:
        """min(mark of the node's liveness partition, marks of every sessions partition)."""
        if liveness_partition is None or self.sessions_floor is None:
            return None
        liveness = self.marks.get(source_key("liveness", liveness_partition))
        return None if liveness is None else min(liveness, self.sessions_floor)


@dataclass(slots=True)
class OutageGuard:
    """Whether reaching the end offsets may vouch for the wall clock (R8's second rule).

    An end-offset request that failed, or took more than ``gap_s``, means the broker was
    unreachable — and so, most likely, were the producers, who deliver what they held once it
    is back. For ``settle_s`` after such an outage, marks follow the event time of forwarded
    records only; otherwise a deadline could be decided ahead of a reconnection held up by the
    outage. (A pause of the worker itself, e.g. a rebalance, is not an outage.) An outage often
    costs the worker its group membership too, and it gets its partitions back only some time
    after the broker: partitions assigned while settling settle for ``settle_s`` from then.
    """

    gap_s: float
    settle_s: float
    failing_since: float | None = None
    settle_until: float = 0.0

    def failed(self, now: float) -> None:
        if self.failing_since is None:
            self.failing_since = now

    def answered(self, asked_at: float, now: float) -> float | None:
        """A request sent at ``asked_at`` was answered at ``now`` (monotonic seconds); returns
        how long the broker was out of reach when that was an outage."""
        outage = None
        if self.failing_since is not None:
            outage = now - self.failing_since
        elif now - asked_at > self.gap_s:
            outage = now - asked_at
        self.failing_since = None
        if outage is not None:
            self.settle_until = now + self.settle_s
        return outage

    def reassigned(self, now: float) -> None:
        """The worker was given its partitions (again) at ``now``."""
        if self.failing_since is not None or now < self.settle_until:
            self.settle_until = now + self.settle_s

    def trust_wall_clock(self, now: float) -> bool:
        return now >= self.settle_until
