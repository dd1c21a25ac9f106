"""Feeding the simulated cluster to Kafka: the adapter around the pure model.

One idempotent producer (``acks=all``), sends pipelined (a bounded window of unacknowledged
sends), each record's Kafka timestamp = its event timestamp. Its records wait up to two minutes
for a partition leader (aiokafka fails a batch after ``request_timeout_ms`` without one, 40 s by
default: a 20 s broker outage plus the restart once outlasted it in the fault matrix). Two paces:

- ``realtime``: a record goes out when the wall clock reaches its timestamp (``speed`` > 1 runs
  the story faster; the timestamps stay the model's, ahead of the wall clock);
- ``max``: as fast as the broker takes them, optionally held to ``rate`` records per second by
  a token bucket. The timestamps are still the model's, starting now, so the detector decides
  each crash when the wall clock reaches its deadline, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from services.config import KafkaSettings
from services.kafka_clients import new_producer
from services.simulator.model import Simulation

__all__ = ["FeedOptions", "FeedReport", "TokenBucket", "feed"]

Mode = Literal["realtime", "max"]
_WINDOW = 5000  # sends in flight before waiting for their acknowledgements
_LEADER_WAIT_MS = 120_000  # how long a record may wait for its partition's leader


@dataclass(frozen=True, slots=True)
class FeedOptions:
    mode: Mode = "realtime"
    speed: float = 1.0  # realtime only
    rate: float = 0.0  # records per second in max mode; 0 = unlimited


@dataclass
class FeedReport:
    sent: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class TokenBucket:
    """At most ``rate`` takes per second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.updated = burst, clock()

    def wait_time(self) -> float:
        """Take one token; how long to sleep first (0 when one was there)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


async def feed(
    settings: KafkaSettings,
    sim: Simulation,
    options: FeedOptions,
    on_sent: Callable[[int], None] = lambda _n: None,
) -> FeedReport:
    """Send every record of ``sim`` (until SIGINT/SIGTERM); returns what was sent."""
    topics = {"liveness": settings.topic_liveness, "sessions": settings.topic_sessions}
    producer = new_producer(
        settings,
        acks="all",
        enable_idempotence=True,
        linger_ms=5 if options.mode == "max" else 0,
        request_timeout_ms=_LEADER_WAIT_MS,
    )
    report, stop = FeedReport(), asyncio.Event()
    started = time.monotonic()
    try:
        await producer.start()
        with _stopping_on_signals(stop):
            pace = _pacer(sim.config.start_ms, options, stop)
            pending: list[Awaitable[Any]] = []
            for record in sim:
                if await pace(record.timestamp) or stop.is_set():
                    report.interrupted = True
                    break
                pending.append(
                    await producer.send(
                        topics[record.role],
                        record.value,
                        key=record.key.encode(),
                        timestamp_ms=record.timestamp,
                    )
                )
                report.sent += 1
                on_sent(report.sent)
                if len(pending) >= _WINDOW or (options.mode == "realtime" and len(pending) > 50):
                    await _acknowledged(pending)
            await _acknowledged(pending)
    finally:
        await producer.stop()
        report.elapsed_s = time.monotonic() - started
    return report


async def _acknowledged(pending: list[Awaitable[Any]]) -> None:
    await asyncio.gather(*pending)
    pending.clear()


def _pacer(
    start_ms: int, options: FeedOptions, stop: asyncio.Event
) -> Callable[[int], Awaitable[bool]]:
    """An awaitable per record that returns once it may be sent; True when interrupted."""
    wall_start = time.time() * 1000
    bucket = (
        TokenBucket(options.rate, max(1.0, options.rate / 10), time.monotonic)
        if options.mode == "max" and options.rate > 0
        else None
    )

    async def pace(timestamp: int) -> bool:
        if options.mode == "realtime":
            due = wall_start + (timestamp - start_ms) / options.speed
            delay = (due - time.time() * 1000) / 1000
        else:
            delay = bucket.wait_time() if bucket is not None else 0.0
        if delay <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        return stop.is_set()

    return pace


@contextlib.contextmanager
def _stopping_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
