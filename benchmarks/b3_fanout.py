"""B3: crash fan-out — one node hosting S sessions × P participants crashes.

Method: on fresh topics and a fresh PostgreSQL database, a detector and a projector run
(`mediacdr detector`, `mediacdr projector`). The node `media_fanout` (and an idle spare node)
connect, and S sessions are opened on `media_fanout`, each with P participants who all publish
and receive every other one (the simulator's payload builders). Once the detector has written
every CDR copy and the projector has stored positions up to the end of the CDR and node-facts
topics, the node disconnects (stamped with the wall clock) and stays away. Its cascade is
S × (P² media connections destroyed + P participants left + 1 session destroyed) CDR records
(111,000 for 1,000 × 10) and S × P client notices. Measured from the moment this process reads
the `nodeCrashed` from the CDR topic:

- to the last cascade record on the CDR topic (end offsets polled every 50 ms);
- to the last SQL row on PostgreSQL: the projector's consumed positions, stored in the same
  transaction as the rows, reach the end of both topics (polled every 100 ms);
- (beside) to the last client notice on the notifications topic.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import Engine, Select, create_engine, func, select

from benchmarks.cluster import (
    cascade_size,
    cpu_seconds,
    end_total,
    live_sessions,
    node_crashed_times,
    preload,
    profiled,
    seek_to_cdr_end,
    setup_timeout,
    wait_for_total,
    wall_ms,
)
from benchmarks.infra import Bench, Deployment
from benchmarks.report import Result
from services.simulator import payloads as p
from services.store import models

__all__ = ["run"]

NODE, SPARE = "media_fanout", "media_spare"
#: the figures of a run whose set-up or cascade did not finish in time
FIGURES = "topic from_deadline to_first decision cpu_before cpu_after cascade_cpu notices sql"
STALLED = dict.fromkeys([*FIGURES.split(), "setup_cpu"], math.inf)


def run(bench: Bench, sessions: int, participants: int, runs: int) -> list[Result]:
    samples: list[dict[str, float]] = []
    stalls: list[str] = []
    for _ in range(runs):
        try:
            samples.append(_once(bench, sessions, participants))
        except TimeoutError as e:
            samples.append(STALLED)
            stalls.append(str(e))
    cascade = cascade_size(sessions, participants, media=True)
    shape = (
        f"{sessions:,} sessions × {participants} participants on one node: {cascade:,} "
        f"cascade records and {sessions * participants:,} notices"
    )
    if stalls:
        shape += "; STALLED: " + "; ".join(stalls)
    return [
        _within(
            samples,
            "topic",
            15,
            "crash fan-out: nodeCrashed → last cascade record on the topic",
            shape,
            {
                "nodeCrashed → last notice (median)": _median(samples, "notices"),
                "cascade records/s on the topic (median)": (
                    f"{statistics.median(cascade / s['topic'] for s in samples):,.0f}"
                ),
                "detector CPU from nodeCrashed to the last cascade record, ms per cascade record "
                "(median)": f"{statistics.median(s['cascade_cpu'] for s in samples):.2f}",
                "set-up: input records; detector CPU ms per record (median)": (
                    f"{_setup_records(sessions, participants):,}; "
                    f"{statistics.median(s['setup_cpu'] for s in samples):.2f}"
                ),
            },
        ),
        _within(
            samples,
            "sql",
            30,
            "crash fan-out: nodeCrashed → last SQL row on PostgreSQL",
            shape + "; the projector runs beside the detector",
            {
                "from the deadline + allowed lateness: ce_decidedat of nodeCrashed; nodeCrashed "
                "read here; last cascade record on the topic (median)": " ; ".join(
                    _median(samples, key) for key in ("decision", "to_first", "from_deadline")
                ),
                "detector CPU: disconnection → nodeCrashed read (grace window included); "
                "nodeCrashed → last cascade record (median)": (
                    f"{_median(samples, 'cpu_before')} ; {_median(samples, 'cpu_after')}"
                ),
            },
        ),
    ]


def _within(
    samples: list[dict[str, float]],
    key: str,
    limit_s: int,
    name: str,
    note: str,
    extra: dict[str, str],
) -> Result:
    """A B3 result in seconds, met when every run's ``key`` is at most ``limit_s``."""
    values = [s[key] for s in samples]
    return Result("B3", name, "s", values, f"<= {limit_s} s", max(values) <= limit_s, note, extra)


def _setup_records(sessions: int, participants: int) -> int:
    return sessions * (1 + participants + participants * participants)


def _median(samples: list[dict[str, float]], key: str) -> str:
    return f"{statistics.median(s[key] for s in samples):.1f} s"


def _once(bench: Bench, sessions: int, participants: int) -> dict[str, float]:
    d = bench.deployment()
    url = bench.fresh_database("postgresql")
    t0 = wall_ms()
    opened = live_sessions(d, [NODE], sessions, participants, media=True, t0=t0 + 10)
    engine = create_engine(url)
    try:
        with (
            d.service("detector", log_name="detector-b3") as detector,
            d.service("projector", log_name="projector-b3", MEDIACDR_DATABASE_URL=url) as projector,
        ):
            loaded = preload(d, detector.pid, [NODE, SPARE], t0, opened)
            setup_cpu = loaded.cpu_s * 1000 / len(opened)
            asyncio.run(_projected(d, engine, setup_timeout(len(opened))))
            cascade = cascade_size(sessions, participants, media=True)
            with (
                profiled(detector.pid, "b3-cascade-detector"),
                profiled(projector.pid, "b3-cascade-projector"),
            ):
                found = asyncio.run(
                    _crash(d, engine, cascade, sessions * participants, detector.pid)
                )
            return found | {"setup_cpu": setup_cpu}
    finally:
        engine.dispose()


async def _crash(
    d: Deployment, engine: Engine, cascade: int, notices: int, detector: int
) -> dict[str, float]:
    bootstrap, parts = d.bench.bootstrap, d.bench.partitions
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await seek_to_cdr_end(consumer, d)
        cdr_end = await end_total(consumer, d.topic("cdr"), parts) + 1 + cascade
        notices_end = await end_total(consumer, d.topic("notifications"), parts) + notices
        timeout = 60 + cascade / 100
        topic_done = asyncio.create_task(
            wait_for_total(bootstrap, d.topic("cdr"), parts, cdr_end, timeout)
        )
        notices_done = asyncio.create_task(
            wait_for_total(bootstrap, d.topic("notifications"), parts, notices_end, timeout)
        )
        sql_done = asyncio.create_task(_projected(d, engine, timeout, cdr_at_least=cdr_end))
        cpu_0 = cpu_seconds(detector)
        await _disconnect(d)
        crashed_at, due, decided = await _node_crashed(consumer, timeout=60)
        cpu_1 = cpu_seconds(detector)
        topic_at = await topic_done
        cpu_2 = cpu_seconds(detector)
        return {
            "topic": topic_at - crashed_at,
            "from_deadline": topic_at - due,
            "to_first": crashed_at - due,
            "decision": decided - due,
            "cpu_before": cpu_1 - cpu_0,
            "cpu_after": cpu_2 - cpu_1,
            "cascade_cpu": (cpu_2 - cpu_1) * 1000 / cascade,
            "notices": await notices_done - crashed_at,
            "sql": await sql_done - crashed_at,
        }
    finally:
        await consumer.stop()


async def _disconnect(d: Deployment) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=d.bench.bootstrap, acks="all")
    await producer.start()
    try:
        event = p.encode(p.node_disconnected(NODE, wall_ms()))
        await producer.send_and_wait(d.topic("liveness"), event, key=NODE.encode())
    finally:
        await producer.stop()


async def _node_crashed(consumer: AIOKafkaConsumer, timeout: float) -> tuple[float, float, float]:
    """When this process read the nodeCrashed, its deadline + allowed lateness, and its
    ``ce_decidedat`` (epoch s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=100)
        arrived = time.time()
        for records in batch.values():
            for r in records:
                times = node_crashed_times(r)
                if times is not None:
                    due, decided = times
                    return arrived, due / 1000, decided / 1000
    raise TimeoutError("no nodeCrashed on the CDR topic")


async def _projected(d: Deployment, engine: Engine, timeout: float, cdr_at_least: int = 0) -> float:
    """Wall-clock time (epoch s) at which the projector's stored positions reached the end of the
    CDR topic (and at least ``cdr_at_least``) and of the node-facts topic."""
    positions = models.consumed_positions
    query = select(positions.c.topic, func.sum(positions.c.next_offset)).group_by(positions.c.topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=d.bench.bootstrap)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            stored = await asyncio.to_thread(_stored, engine, query)
            cdr = max(cdr_at_least, await end_total(consumer, d.topic("cdr"), d.bench.partitions))
            nodes = await end_total(consumer, d.topic("nodes"), d.bench.partitions)
            if stored.get(d.topic("cdr"), 0) >= cdr and stored.get(d.topic("nodes"), 0) >= nodes:
                return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"projected {stored}, want cdr {cdr:,} and nodes {nodes:,}")
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


def _stored(engine: Engine, query: Select[str, int]) -> dict[str, int]:
    with engine.connect() as conn:
        return {topic: int(total) for topic, total in conn.execute(query)}
