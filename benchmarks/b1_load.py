"""B1 under load: crash decisions while 1,000 nodes heartbeat and 10,000 sessions are live.

See the method in ``b1_latency``'s docstring.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.cluster import (
    cpu_seconds,
    live_sessions,
    node_crashed_times,
    preload,
    profiled,
    seek_to_cdr_end,
    wall_ms,
)
from benchmarks.infra import Bench, Deployment
from services.simulator import payloads as p

__all__ = ["Load", "Sample", "measure"]

WARM_UP_S = 5.0  # heartbeats alone before the first crash
GIVE_UP_S = 60.0  # a crash not on the topic this long after the last disconnection is undecided
SLOTS = 100  # the heartbeat loop wakes every 1/SLOTS of a heartbeat period


@dataclass(frozen=True)
class Load:
    nodes: int
    sessions: int
    participants: int
    crashes: int
    spacing_ms: int
    heartbeat_ms: int = 1000


@dataclass
class Sample:
    """One run: per crash, the delay seen on the topic and the one the detector stamped."""

    on_topic: list[float] = field(default_factory=list)
    decided: list[float] = field(default_factory=list)
    undecided: int = 0  # crashes not on the topic within the wait; count as infinitely late
    heartbeats_per_s: float = 0.0
    detector_cpu_s: float = 0.0  # the detector's CPU time while crashes are injected
    phase_s: float = 0.0  # how long that phase lasted
    liveness_backlog: int = 0  # liveness records not yet committed by the detector at the end
    liveness_applied: int = 0  # liveness records it committed while crashes were injected
    internal_backlog: int = 0  # records on <app id>-nodeevents the node agent had not committed
    preload_s: float = 0.0
    preload_records: int = 0
    preload_cpu_s: float = 0.0  # the detector's CPU time during the set-up
    stalled: str = ""  # why the run measured nothing

    def delays(self, attr: str) -> list[float]:
        """The delays of every crash; those not decided in time as infinity."""
        values: list[float] = getattr(self, attr)
        return values + [math.inf] * self.undecided


def measure(bench: Bench, load: Load) -> Sample:
    """One run on a fresh deployment and detector."""
    d = bench.deployment()
    nodes = [f"media_l{i:04d}" for i in range(load.nodes)]
    t0 = wall_ms()
    sessions = live_sessions(
        d, nodes, load.sessions, load.participants, media=True, t0=t0 + 10, prefix="live"
    )
    sample = Sample(preload_records=len(sessions))
    with d.service("detector", log_name="detector-b1load") as process:
        try:
            loaded = preload(d, process.pid, nodes, t0, sessions)
        except TimeoutError as e:
            sample.stalled, sample.undecided = f"set-up: {e}", load.crashes
            return sample
        sample.preload_s, sample.preload_cpu_s = loaded.seconds, loaded.cpu_s
        cpu, started = cpu_seconds(process.pid), time.monotonic()
        with profiled(process.pid, "b1-load-detector"):
            asyncio.run(_crash_under_load(d, nodes, load, sample))
        sample.detector_cpu_s = cpu_seconds(process.pid) - cpu
        sample.phase_s = time.monotonic() - started
    return sample


async def _crash_under_load(d: Deployment, nodes: list[str], load: Load, sample: Sample) -> None:
    bootstrap = d.bench.bootstrap
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        await seek_to_cdr_end(consumer, d)
        _, applied_before = await _offsets(d, d.topic("liveness"))
        crashed: set[str] = set()
        stop = asyncio.Event()
        beats = asyncio.create_task(_heartbeats(producer, d, nodes, crashed, load, stop))
        timeout = WARM_UP_S + load.crashes * load.spacing_ms / 1000 + GIVE_UP_S
        listening = asyncio.create_task(_listen(consumer, load.crashes, sample, timeout))
        await asyncio.sleep(WARM_UP_S)
        victims = random.Random(7).sample(nodes, load.crashes)
        for node in victims:
            crashed.add(node)  # a crashed node sends nothing more
            event = p.encode(p.node_disconnected(node, wall_ms()))
            await producer.send_and_wait(d.topic("liveness"), event, key=node.encode())
            await asyncio.sleep(load.spacing_ms / 1000)
        await listening
        end, committed = await _offsets(d, d.topic("liveness"))
        sample.liveness_backlog = end - committed
        sample.liveness_applied = committed - applied_before
        internal = f"{d.env()['MEDIACDR_DETECTOR_APP_ID']}-nodeevents"
        end, committed = await _offsets(d, internal)
        sample.internal_backlog = end - committed
        stop.set()
        sample.heartbeats_per_s = await beats
    finally:
        await producer.stop()
        await consumer.stop()
    sample.undecided = load.crashes - len(sample.on_topic)


async def _offsets(d: Deployment, topic: str) -> tuple[int, int]:
    """(records on ``topic``, those the detector's group has committed). Faust commits every few
    seconds, so a detector that keeps up is a few seconds' worth behind."""
    group = d.env()["MEDIACDR_DETECTOR_APP_ID"]
    consumer = AIOKafkaConsumer(bootstrap_servers=d.bench.bootstrap, group_id=group)
    await consumer.start()  # never subscribes: not a member of the detector's group
    try:
        tps = [TopicPartition(topic, i) for i in range(d.bench.partitions)]
        ends = await consumer.end_offsets(tps)
        committed = [await consumer.committed(tp) or 0 for tp in tps]
        return sum(ends.values()), sum(committed)
    finally:
        await consumer.stop()


async def _heartbeats(
    producer: AIOKafkaProducer,
    d: Deployment,
    nodes: list[str],
    crashed: set[str],
    load: Load,
    stop: asyncio.Event,
) -> float:
    """Every node heartbeats once per period, spread evenly over it, stamped with the wall clock;
    returns the heartbeats sent per second."""
    topic, tick, sent, pending = d.topic("liveness"), 0, 0, []
    period = load.heartbeat_ms / 1000 / SLOTS
    start = time.monotonic()
    while not stop.is_set():
        for node in nodes[tick % SLOTS :: SLOTS]:
            if node not in crashed:
                body = p.encode(p.node_heartbeat(node, wall_ms(), load=10.0))
                pending.append(await producer.send(topic, body, key=node.encode()))
                sent += 1
        tick += 1
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
        delay = start + tick * period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*pending)
    return sent / (time.monotonic() - start)


async def _listen(
    consumer: AIOKafkaConsumer, crashes: int, sample: Sample, timeout_s: float
) -> None:
    """Each nodeCrashed's delay: arrival here, and its ``ce_decidedat``, − (D + lateness)."""
    deadline = time.monotonic() + timeout_s
    while len(sample.on_topic) < crashes and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=100)
        arrived = time.time() * 1000
        for records in batch.values():
            for r in records:
                times = node_crashed_times(r)
                if times is None:
                    continue
                due, decided = times
                sample.on_topic.append(arrived - due)
                sample.decided.append(decided - due)
