"""Mass disconnection: more than a share of the running nodes lose their link in one grace window.

When many media nodes disconnect at once, the likely fault is the observer (whatever produces
the liveness events, e.g. the OpenVidu master) or the network between it and the nodes, not the
nodes themselves. This rule says so; it decides nothing about crashes (every node is still judged
on its own by the grace rules).

It needs a view of the whole cluster, which no detector worker has, so it is fed two streams:

* every disconnection (an ``incidentOpened`` node fact: node id, time of disconnection), from
  any partition, in any order;
* the number of *running* nodes (running or in their grace window, not crashed, removed or shut
  down on purpose) on each node partition, reported by whichever worker owns the partition.

A window is ``(end − window_ms, end]`` in event time; it is *mass* when the distinct nodes that
disconnected in it are more than ``share`` of the running nodes and at least ``min_running``
nodes run. One :class:`MassDisconnect` is decided per episode: windows overlapping one already
reported are not reported again; what is decided is the ``massDisconnect`` node fact
(:class:`services.core.events.MassDisconnect`). Pure: time (``now_ms``) is an argument.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import fastjsonschema

from services.core.codec import decode_json_object
from services.core.errors import SchemaViolation, UnknownEvent
from services.core.events import MassDisconnect
from services.core.schemas import compiled_validator

__all__ = [
    "Disconnection",
    "MassDisconnectPolicy",
    "MassDisconnectWatch",
    "disconnection_of",
    "running_counts",
    "share_of",
]

_OPENED = "incidentOpened"
_RUNNING_LIVES = frozenset({"running", "grace"})


@dataclass(frozen=True, slots=True)
class MassDisconnectPolicy:
    share: float = 0.5
    min_running: int = 4
    window_ms: int = 3000
    #: Disconnections older than this (wall clock) are not judged: replaying an old log must
    #: not compare old bursts with today's node count.
    horizon_ms: int = 15 * 60_000


@dataclass(frozen=True, slots=True)
class Disconnection:
    node_id: str
    at: int  # time of disconnection, epoch ms


def running_counts(rows: Iterable[Any], owned: Collection[int]) -> dict[int, int]:
    """Running nodes per owned partition, from ``NodeState`` rows (``home_partition``): running
    or in their grace window (a moment ago they were running), and not shut down on purpose."""
    counts = dict.fromkeys(owned, 0)
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        partition = row.get("home_partition")
        running = row.get("life") in _RUNNING_LIVES and not row.get("planned_shutdown")
        if running and partition in counts:
            counts[partition] += 1
    return counts


def share_of(found: MassDisconnect) -> float:
    """The share of the running nodes that disconnected."""
    return len(found.node_ids) / found.running_nodes if found.running_nodes else 1.0


def disconnection_of(value: bytes | None) -> Disconnection | None:
    """The disconnection a node-facts record reports; ``None`` for the other facts.

    Raises ``InvalidJson``, ``UnknownEvent`` or ``SchemaViolation`` (dead-letter codes)."""
    doc = decode_json_object(value)
    event = doc.get("event")
    if not isinstance(event, str):
        raise UnknownEvent("a node fact without an event name")
    if event != _OPENED:
        return None
    try:
        compiled_validator("nodefacts", _OPENED)(doc)
    except fastjsonschema.JsonSchemaException as e:
        raise SchemaViolation(f"{_OPENED}: {e}") from e
    return Disconnection(str(doc["id"]), int(doc["timeOfDisconnection"]))


class MassDisconnectWatch:
    """The sliding window over disconnections and the running count of every partition."""

    def __init__(self, policy: MassDisconnectPolicy, partitions: int) -> None:
        self.policy = policy
        self.partitions = partitions
        self.running: dict[int, int] = {}
        self.recent: list[tuple[int, str]] = []  # (at, node), sorted
        self.reported: list[int] = []  # ends of the windows decided, sorted

    @property
    def running_known(self) -> bool:
        """Every partition has reported once: before that the count would be too low."""
        return len(self.running) == self.partitions

    def running_reported(self, counts: Mapping[int, int]) -> list[MassDisconnect]:
        """Running nodes on some partitions (the latest report of a partition wins)."""
        was_known = self.running_known
        for partition, count in counts.items():
            if 0 <= partition < self.partitions:
                self.running[partition] = max(count, 0)
        if was_known or not self.running_known:
            return []
        return self._judge(sorted({at for at, _ in self.recent}))  # held back until now

    def disconnected(self, d: Disconnection, now_ms: int) -> list[MassDisconnect]:
        """A node disconnected at ``d.at``; judge every window that holds it."""
        oldest = now_ms - self.policy.horizon_ms
        self._forget(oldest)
        if d.at < oldest:
            return []
        insort(self.recent, (d.at, d.node_id))
        if not self.running_known:
            return []
        ends = {at for at, _ in self.recent if d.at <= at < d.at + self.policy.window_ms}
        return self._judge(sorted(ends))

    def _judge(self, ends: list[int]) -> list[MassDisconnect]:
        decided: list[MassDisconnect] = []
        running = sum(self.running.values())
        if running < self.policy.min_running:
            return decided
        for end in ends:
            if self._overlaps_reported(end):
                continue
            nodes, start = self._window(end)
            if len(nodes) > self.policy.share * running:
                found = MassDisconnect(
                    timestamp=end,
                    window_start=start,
                    window_ms=self.policy.window_ms,
                    node_ids=sorted(nodes),
                    running_nodes=running,
                    threshold=self.policy.share,
                )
                insort(self.reported, end)
                decided.append(found)
        return decided

    def _window(self, end: int) -> tuple[set[str], int]:
        lo = bisect_right(self.recent, (end - self.policy.window_ms, "\U0010ffff"))
        hi = bisect_right(self.recent, (end, "\U0010ffff"))
        window = self.recent[lo:hi]
        return {node for _, node in window}, window[0][0]

    def _overlaps_reported(self, end: int) -> bool:
        w = self.policy.window_ms
        i = bisect_left(self.reported, end - w + 1)
        return i < len(self.reported) and self.reported[i] < end + w

    def _forget(self, oldest: int) -> None:
        cut = bisect_left(self.recent, (oldest, ""))
        del self.recent[:cut]
        del self.reported[: bisect_left(self.reported, oldest)]
