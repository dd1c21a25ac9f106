"""Durable read positions: the detector's own record of what it processed, per partition.

Faust cannot be trusted with that across a rebalance. Its stream skips the records it fetched
under the previous generation (or while flow control is suspended) *and acknowledges them*
(``Stream._c_aiter``: "We want to ack the filtered out message"), and its commit takes the
first contiguous run of acknowledged offsets, from wherever that run starts. Either way the
group's committed offset can pass records no agent ever processed; the next owner starts
after them, and they are lost (seen as whole sessions missing from the CDR when two workers
shared a backlog).

So every agent keeps, in the ``read-positions`` table, the next offset it must process on each
partition it reads, written after the effects of the records before it are durable. Each
record is judged against it (:func:`judge`): the next one is processed; one below it was
processed before (a replay after a restart or a seek) and is skipped; one above it means
records were skipped, so the agent reads again from its position. A position is only ever
behind what was done, never ahead, so a lost position write costs replays, not records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Rewinds", "Verdict", "judge", "position_key"]


class Verdict(Enum):
    PROCESS = "process"
    REPLAY = "replay"
    GAP = "gap"


def position_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def judge(offset: int, expected: int | None) -> Verdict:
    """What to do with the record at ``offset`` when the next one to process is ``expected``
    (None: nothing processed yet on this partition, so whatever comes first is next)."""
    if expected is None or offset == expected:
        return Verdict.PROCESS
    return Verdict.REPLAY if offset < expected else Verdict.GAP


@dataclass(slots=True)
class Rewinds:
    """The seeks back to a position that are under way: records above the position keep
    arriving (already fetched) until the seek takes effect, and need no new seek each."""

    retry_after_s: float
    pending: dict[str, tuple[int, float]] = field(default_factory=dict)

    def due(self, key: str, position: int, now: float) -> bool:
        """Whether to seek ``key`` back to ``position`` now."""
        current = self.pending.get(key)
        if current is not None and current[0] == position and now - current[1] < self.retry_after_s:
            return False
        self.pending[key] = (position, now)
        return True

    def done(self, key: str) -> None:
        self.pending.pop(key, None)
