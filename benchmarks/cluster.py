"""A busy cluster's input for B1, B3 and B6, and the clocks that wait for the detector's output.

Nodes and live sessions are built with the simulator's payload builders
(`services/simulator/payloads.py`), so they are in the wire format every producer of test and
demo traffic writes. The simulator's model itself is not used here: a benchmark needs an exact
shape (so many sessions per node, every participant publishing and receiving every other one)
and everything stamped with the wall clock, which `mediacdr simulate --mode max` does not do.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.infra import Deployment, Record, produce
from services.simulator import payloads as p

__all__ = [
    "LATENESS_MS",
    "Preload",
    "bring_up",
    "cascade_size",
    "connect_nodes",
    "cpu_seconds",
    "end_total",
    "live_sessions",
    "node_crashed_times",
    "parse_ce_time",
    "preload",
    "profiled",
    "seek_to_cdr_end",
    "setup_timeout",
    "wait_for_total",
    "wall_ms",
]

LATENESS_MS = 100  # the detector's default MEDIACDR_ALLOWED_LATENESS_MS

#: The slowest detector a set-up waits for, in input events per second (B2 measured 1.2k/s on
#: a quiet machine); below it the benchmark reports the run as stalled instead of waiting on.
SETUP_FLOOR_PER_S = 50


def setup_timeout(records: int) -> float:
    return 120 + records / SETUP_FLOOR_PER_S


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wall_ms() -> int:
    return int(time.time() * 1000)


def parse_ce_time(value: bytes) -> int:
    """Epoch ms of a ``ce_time``-style header (``YYYY-MM-DDTHH:MM:SS.sssZ``)."""
    moment = datetime.fromisoformat(value.decode().replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)


def connect_nodes(d: Deployment, nodes: Iterable[str], ts: int) -> list[Record]:
    topic = d.topic("liveness")
    return [
        (topic, n.encode(), p.encode(p.node_connected(n, ts, ip="10.0.0.1", load=5.0)), [], ts)
        for n in nodes
    ]


def bring_up(d: Deployment, nodes: list[str], ts: int) -> None:
    """Connect ``nodes`` and wait for their ``nodeDescribed`` facts: the detector is up, so what
    follows is not mixed with its start-up."""
    produce(d.bench.bootstrap, connect_nodes(d, nodes, ts))
    bench = d.bench
    wait = wait_for_total(bench.bootstrap, d.topic("nodes"), bench.partitions, len(nodes), 300)
    asyncio.run(wait)


@dataclass(frozen=True)
class Preload:
    """How long the detector took to copy the live sessions to the CDR, and its CPU time then."""

    seconds: float
    cpu_s: float


def preload(
    d: Deployment, detector_pid: int, nodes: list[str], t0: int, records: list[Record]
) -> Preload:
    """Bring ``nodes`` up, then write ``records`` (from :func:`live_sessions`) and wait for every
    CDR copy; raises ``TimeoutError`` when the detector is slower than ``setup_timeout``."""
    bring_up(d, nodes, t0)
    bench = d.bench
    started, cpu = time.monotonic(), cpu_seconds(detector_pid)
    produce(bench.bootstrap, records)
    timeout = setup_timeout(len(records))
    asyncio.run(
        wait_for_total(bench.bootstrap, d.topic("cdr"), bench.partitions, len(records), timeout)
    )
    return Preload(time.monotonic() - started, cpu_seconds(detector_pid) - cpu)


def _session(
    topic: str, sid: str, node: str, t: int, participants: int, media: bool
) -> list[Record]:
    """One live session: created, everyone joined and, with ``media``, everyone publishing and
    receiving every other participant (OpenVidu's full mesh of a small meeting)."""
    people = [f"con_{sid}_{i}" for i in range(participants)]
    bodies = [p.session_created(sid, t, node)]
    bodies += [
        p.participant_joined(sid, cid, t + 1 + i, p.Person(client_data=f"user-{i}"))
        for i, cid in enumerate(people)
    ]
    if media:
        t_out = t + 1 + participants
        bodies += [
            p.outbound_created(sid, cid, t_out + i, f"str_{cid}") for i, cid in enumerate(people)
        ]
        t_in = t_out + participants
        bodies += [
            p.inbound_created(sid, receiver, sender, t_in + i, f"str_{sender}")
            for i, (receiver, sender) in enumerate((r, s) for r in people for s in people if r != s)
        ]
    return [(topic, sid.encode(), p.encode(b), [], int(b["timestamp"])) for b in bodies]


def live_sessions(
    d: Deployment,
    nodes: list[str],
    sessions: int,
    participants: int,
    *,
    media: bool,
    t0: int,
    prefix: str = "ses",
) -> list[Record]:
    """``sessions`` sessions spread round-robin over ``nodes``, all open; each accepted record
    makes one CDR copy, so ``len()`` of the result is also the number of copies to wait for."""
    topic = d.topic("sessions")
    out: list[Record] = []
    for s in range(sessions):
        node = nodes[s % len(nodes)]
        out += _session(topic, f"{prefix}_{s:06d}", node, t0 + s // 10, participants, media)
    return out


def cascade_size(sessions: int, participants: int, *, media: bool) -> int:
    """CDR records of the cascade (CONTRACT §6) that closes ``sessions`` such sessions: per
    session every media connection destroyed, every participant left, the session destroyed."""
    connections = participants * participants if media else 0  # publishers + receivers
    return sessions * (connections + participants + 1)


async def end_total(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> int:
    tps = [TopicPartition(topic, i) for i in range(partitions)]
    return sum((await consumer.end_offsets(tps)).values())


async def seek_to_cdr_end(consumer: AIOKafkaConsumer, d: Deployment) -> None:
    """Assign ``consumer`` every CDR partition at its end, positions resolved now (not while the
    records to time arrive)."""
    tps = [TopicPartition(d.topic("cdr"), i) for i in range(d.bench.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)


def node_crashed_times(record: Any) -> tuple[int, int] | None:
    """Of a ``nodeCrashed`` CDR record: its deadline + allowed lateness, and its ``ce_decidedat``
    (epoch ms); ``None`` for any other record."""
    headers: dict[str, Any] = dict(record.headers)
    if headers.get("ce_type") != b"nodeCrashed":
        return None
    due = int(json.loads(record.value)["timestamp"]) + LATENESS_MS
    return due, parse_ce_time(headers["ce_decidedat"])


async def wait_for_total(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout: float, poll: float = 0.05
) -> float:
    """Wall-clock time (epoch s) at which ``topic`` first held ``expected`` records in all."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            count = await end_total(consumer, topic, partitions)
            if count >= expected:
                return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count:,} of {expected:,} records on {topic} after {timeout}")
            await asyncio.sleep(poll)
    finally:
        await consumer.stop()


@contextmanager
def profiled(pid: int, name: str) -> Iterator[None]:
    """With ``MEDIACDR_BENCH_PROFILE=<folder>``, py-spy (from the venv) samples process ``pid``
    meanwhile, 50 times a second, into ``<folder>/<name>-<time>.txt`` (collapsed stacks, one line
    per stack and count: flamegraph.pl or speedscope read them). Without it, nothing."""
    folder = os.environ.get("MEDIACDR_BENCH_PROFILE")
    if not folder:
        yield
        return
    out = Path(folder) / f"{name}-{int(time.time())}.txt"
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "-p", str(pid), "-r", "50", "-f", "raw", "-o", str(out)]
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        sampler.wait(timeout=120)
