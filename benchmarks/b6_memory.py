"""B6: detector memory per tracked connection, from its resident set size (RSS).

Method: one `mediacdr detector` process on fresh topics. N nodes connect (100 sessions per
node) and one probe session is opened; once its CDR copy is out the detector is running and
caught up, and its RSS (VmRSS in /proc/<pid>/status) is read: the figure at 0 connections.
Then S sessions × P participants (OpenVidu connections: `participantJoined`, no media) are
put on the input topics in two halves; after each half the clock waits until the detector has
written every CDR copy (it writes the copies before the state that accounts for them) and
until its RSS is steady (four readings 0.5 s apart within 0.5 %), then reads it.
Bytes per connection = (RSS at S × P − RSS at 0) / (S × P). The second half alone
(RSS at S × P − RSS at half) / (S × P / 2) is reported beside it: the marginal cost, without the
start-up allocations (buffers, caches) that the first records of any kind trigger.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from pathlib import Path

from benchmarks.cluster import (
    connect_nodes,
    live_sessions,
    setup_timeout,
    wait_for_total,
    wall_ms,
)
from benchmarks.infra import Bench, Deployment, Record, produce
from benchmarks.report import Result

__all__ = ["rss_bytes", "run"]

SESSIONS_PER_NODE = 100
NAME, TARGET = "detector memory per tracked connection", "<= 2 KB"


def run(bench: Bench, sessions: int, participants: int, runs: int) -> list[Result]:
    samples: list[tuple[int, int, int]] = []
    stalls: list[str] = []
    for _ in range(runs):
        try:
            samples.append(_once(bench, sessions, participants))
        except TimeoutError as e:
            stalls.append(str(e))
    connections = sessions * participants
    note = (
        f"RSS at 0 and at {connections:,} connections ({sessions:,} sessions × "
        f"{participants} participants over {_nodes(sessions)} nodes); one detector process"
    )
    if stalls:
        note += "; STALLED: " + "; ".join(stalls)
    if not samples:
        return [Result("B6", NAME, "bytes", [math.inf], TARGET, False, note)]
    per = [(s[2] - s[0]) / connections for s in samples]
    marginal = [(s[2] - s[1]) / (connections - connections // 2) for s in samples]
    return [
        Result(
            "B6",
            NAME,
            "bytes",
            per,
            TARGET,
            max(per) <= 2048 and not stalls,
            note,
            extra={
                "RSS at 0 / half / all (median, MiB)": " / ".join(
                    f"{statistics.median(s[i] for s in samples) / 2**20:.0f}" for i in range(3)
                ),
                "second half only, bytes per connection (median)": (
                    f"{statistics.median(marginal):,.0f}"
                ),
            },
        )
    ]


def _nodes(sessions: int) -> int:
    return max(1, sessions // SESSIONS_PER_NODE)


def _once(bench: Bench, sessions: int, participants: int) -> tuple[int, int, int]:
    """RSS in bytes at 0, half and all connections."""
    d = bench.deployment()
    nodes = [f"media_m{i:03d}" for i in range(_nodes(sessions))]
    t0 = wall_ms()
    half = sessions // 2
    first = live_sessions(d, nodes, half, participants, media=False, t0=t0 + 10)
    second = live_sessions(
        d, nodes, sessions - half, participants, media=False, t0=t0 + 20 + half, prefix="late"
    )
    probe = live_sessions(d, nodes, 1, 0, media=False, t0=t0 + 5, prefix="probe")
    with d.service("detector", log_name="detector-b6") as process:
        status = Path(f"/proc/{process.pid}/status")
        copies = _load(d, connect_nodes(d, nodes, t0) + probe, 0, len(probe))
        readings = [_steady_rss(status)]
        for part in (first, second):
            copies = _load(d, part, copies, len(part))
            readings.append(_steady_rss(status))
    return readings[0], readings[1], readings[2]


def _load(d: Deployment, records: list[Record], before: int, copies: int) -> int:
    """Produce ``records``; wait until their ``copies`` CDR copies are out; the new total."""
    produce(d.bench.bootstrap, records)
    total = before + copies
    timeout = setup_timeout(copies)
    bench = d.bench
    asyncio.run(wait_for_total(bench.bootstrap, d.topic("cdr"), bench.partitions, total, timeout))
    return total


def rss_bytes(status: Path) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS in {status}")


def _steady_rss(status: Path, timeout: float = 30.0) -> int:
    readings = [rss_bytes(status)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        readings.append(rss_bytes(status))
        last = readings[-4:]
        if len(last) == 4 and max(last) - min(last) <= 0.005 * max(last):
            break
    return readings[-1]
