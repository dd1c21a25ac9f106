"""B2: detector throughput on one worker (and two), against a raw aiokafka loop on the same
broker and input.

Method: M input records (sessions with three participants over ten nodes, plus heartbeats) are
put on fresh input topics first. Then the consumer under test starts; the clock runs from the
first record it writes to the last (end offsets of its output topic, polled every 50 ms), so
start-up and group joining are not counted. input events/s = M / that time.
- raw loop: one aiokafka consumer (group, both input topics) → `json.loads` → one produced record
  per input event (pipelined sends), in this process;
- detector: `mediacdr detector` processes (1, then 2 in one group), writing the CDR copies; its
  heartbeats produce nothing, so the clock stops at the last CDR copy.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.infra import Bench, Deployment, Record, produce
from benchmarks.report import Result
from benchmarks.workloads import _sessions

__all__ = ["run"]


def _inputs(d: Deployment, events: int) -> tuple[list[Record], int]:
    """About ``events`` input records, and how many CDR copies they make."""
    sessions = max(1, events // 9)
    records: list[Record] = []
    copies = 0
    # Stamped an hour ago, not at the workloads' fixed T0 (September 2026): the input topics
    # keep 7 days, so the broker's retention check may delete records stamped that long ago
    # while the workers are still reading them.
    t0 = int(time.time() * 1000) - 3_600_000
    for kind, node, payload in _sessions(sessions, 3, t0):
        if kind == "liveness":
            topic, key = d.topic("liveness"), node
        else:
            topic, key = d.topic("sessions"), str(payload["sessionId"])
            copies += 1
        value = json.dumps(payload, separators=(",", ":")).encode()
        records.append((topic, key.encode(), value, [], int(payload["timestamp"])))  # type: ignore[arg-type]
        if kind == "session" and payload["event"] == "sessionCreated":
            ts = int(payload["timestamp"])  # type: ignore[arg-type]
            beat = {"event": "nodeHeartbeat", "timestamp": ts, "id": node, "load": 10.0}
            records.append((d.topic("liveness"), node.encode(), json.dumps(beat).encode(), [], ts))
    return records, copies


async def _ends(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> int:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = await consumer.end_offsets(tps)
    return sum(ends.values())


async def _clock(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout: float
) -> float:
    """Seconds from the first record on ``topic`` to the ``expected``-th."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        first: float | None = None
        deadline = time.monotonic() + timeout
        while True:
            count = await _ends(consumer, topic, partitions)
            now = time.monotonic()
            if count and first is None:
                first = now
            if count >= expected:
                assert first is not None
                return max(now - first, 1e-3)
            if now > deadline:
                raise TimeoutError(f"{count} of {expected} records on {topic}")
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()


async def _raw_loop(d: Deployment, out_topic: str, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        d.topic("liveness"),
        d.topic("sessions"),
        bootstrap_servers=d.bench.bootstrap,
        group_id=f"raw-{d.suffix}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=d.bench.bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            for records in batch.values():
                for r in records:
                    event = json.loads(r.value or b"{}")
                    await producer.send(out_topic, json.dumps(event).encode(), key=r.key)
            if batch:
                await consumer.commit()
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()


def _raw(bench: Bench, events: int) -> float:
    d = bench.deployment()
    records, _copies = _inputs(d, events)
    produce(bench.bootstrap, records)
    out = d.topic("cdr")

    async def measure() -> float:
        stop = asyncio.Event()
        loop = asyncio.create_task(_raw_loop(d, out, stop))
        try:
            return await _clock(bench.bootstrap, out, bench.partitions, len(records), 600)
        finally:
            stop.set()
            await loop

    return len(records) / asyncio.run(measure())


def _detector(bench: Bench, events: int, workers: int, stalls: list[str]) -> float:
    """Input events/s; 0 when the workers did not finish (said in ``stalls``)."""
    d = bench.deployment()
    records, copies = _inputs(d, events)
    produce(bench.bootstrap, records)
    timeout = max(180.0, events / 500)
    with _Workers(d, workers):
        try:
            elapsed = asyncio.run(
                _clock(bench.bootstrap, d.topic("cdr"), bench.partitions, copies, timeout)
            )
        except TimeoutError as e:
            stalls.append(f"{workers} worker(s): {e} after {timeout:.0f} s")
            return 0.0
    return len(records) / elapsed


class _Workers:
    def __init__(self, d: Deployment, count: int) -> None:
        self.contexts = [
            d.service(
                "detector", MEDIACDR_DETECTOR_DATA_DIR=str(d.bench.workdir / f"w{i}-{d.suffix}")
            )
            for i in range(count)
        ]

    def __enter__(self) -> None:
        for c in self.contexts:
            c.__enter__()

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self.contexts):
            c.__exit__(None, None, None)


def run(bench: Bench, events: int, runs: int, scale_runs: int = 1) -> list[Result]:
    """``runs`` of the raw loop and one worker; ``scale_runs`` of two workers (0: none)."""
    measured: dict[str, list[float]] = {"raw": [], "one": [], "two": []}
    stalls: list[str] = []
    steps: list[tuple[str, Callable[[], float]]] = [
        ("raw", lambda: _raw(bench, events)),
        ("one", lambda: _detector(bench, events, 1, stalls)),
        ("two", lambda: _detector(bench, events, 2, stalls)),
    ]
    for i in range(runs):
        for name, step in steps:
            if name != "two" or i < scale_runs:
                measured[name].append(step())
    ratios = [o / r for o, r in zip(measured["one"], measured["raw"], strict=True)]
    scale = [t / o if o else 0.0 for t, o in zip(measured["two"], measured["one"], strict=False)]
    results = [
        Result(
            "B2",
            "raw aiokafka consume → produce loop (baseline)",
            "input events/s",
            measured["raw"],
            None,
            None,
            f"~{events:,} input events per run, same input",
        ),
        Result(
            "B2",
            "detector, one worker",
            "input events/s",
            measured["one"],
            ">= 5,000/s",
            min(measured["one"]) >= 5000,
            "clock from the first CDR copy to the last",
        ),
        Result(
            "B2",
            "detector ÷ raw loop",
            "×",
            ratios,
            ">= 0.25",
            min(ratios) >= 0.25,
            "same run, same broker, same input",
        ),
    ]
    if scale:
        note = "two processes in one consumer group on this 2-core machine (the broker shares it)"
        if stalls:
            note += "; STALLED: " + "; ".join(stalls)
        results.append(
            Result(
                "B2", "detector, two workers ÷ one", "×", scale, ">= 1.7", min(scale) >= 1.7, note
            )
        )
    return results
