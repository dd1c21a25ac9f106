"""What an attempt's answer means, and when the next attempt is (CONTRACT §13)."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from typing import Literal

__all__ = ["DEFAULT_SCHEDULE_S", "Outcome", "next_delay_s", "outcome_of", "wants"]

#: Delays before attempts 1..8: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)

Outcome = Literal["delivered", "disable", "retry"]


def outcome_of(status_code: int | None) -> Outcome:
    """2xx delivered; 410 Gone disables the subscription; anything else (or no answer) retries."""
    if status_code is not None and 200 <= status_code < 300:
        return "delivered"
    if status_code == 410:
        return "disable"
    return "retry"


def next_delay_s(
    attempts_made: int, schedule: Sequence[float], jitter: float, rng: random.Random
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts; ``None`` = give up.

    ``schedule[i]`` is the delay before attempt ``i + 1``; each delay is spread by ±``jitter``
    (a fraction) so receivers that come back are not hit by every sender at once.
    """
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made]
    return max(0.0, delay * (1 + rng.uniform(-jitter, jitter)))


def wants(events: Collection[str] | None, event: str) -> bool:
    """A subscription's event filter: ``None`` (or empty) means every CDR event."""
    return not events or event in events
