"""Crash-decision latency: `nodeCrashed` on the CDR topic − (deadline + allowed lateness).

Starts a local broker (or uses MEDIACDR_KAFKA_BOOTSTRAP), a detector process on fresh topics,
then plays N media nodes that disconnect for good, one every --spacing-ms, stamped with the wall
clock. For each `nodeCrashed` it records (time it reached the CDR topic − (deadline + allowed
lateness)) and prints the distribution. CONTRACT R10 asks for at most 250 ms.

    .venv/bin/python scripts/measure_crash_latency.py --crashes 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.config import KafkaSettings  # noqa: E402
from services.localdev.kafka import running_kafka  # noqa: E402
from services.topics import ensure_topics  # noqa: E402

ROLES = ("liveness", "sessions", "cdr", "nodes", "notifications", "deadletter")
GRACE_MS, LATENESS_MS = 3000, 100


@contextmanager
def broker() -> Iterator[str]:
    if os.environ.get("MEDIACDR_KAFKA_BOOTSTRAP"):
        yield os.environ["MEDIACDR_KAFKA_BOOTSTRAP"]
        return
    with tempfile.TemporaryDirectory() as tmp, running_kafka(Path(tmp)) as bootstrap:
        yield bootstrap


@contextmanager
def detector(env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services", "detector"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)


async def play(settings: KafkaSettings, crashes: int, spacing_ms: int) -> list[float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    tps = [TopicPartition(settings.topic_cdr, p) for p in range(settings.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:  # resolve every position now, not while crashes arrive
        await consumer.position(tp)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        listening = asyncio.create_task(
            _listen(consumer, crashes, crashes * spacing_ms / 1000 + 60)
        )
        await _disconnect_nodes(producer, settings, crashes, spacing_ms)
        return await listening
    finally:
        await producer.stop()
        await consumer.stop()


async def _disconnect_nodes(
    producer: AIOKafkaProducer, settings: KafkaSettings, crashes: int, spacing_ms: int
) -> None:
    nodes = [f"media_bench{i}" for i in range(crashes)]
    connected_at = int(time.time() * 1000)
    for node in nodes:  # every node is known and running first
        event = _event("nodeConnected", node, connected_at, ip="10.0.0.1")
        await producer.send(settings.topic_liveness, event, key=node.encode())
    await producer.flush()
    await _described(settings, len(nodes))
    for node in nodes:
        await asyncio.sleep(spacing_ms / 1000)  # pacing the simulated cluster
        event = _event("nodeDisconnected", node, int(time.time() * 1000))
        await producer.send_and_wait(settings.topic_liveness, event, key=node.encode())


async def _described(settings: KafkaSettings, count: int, timeout_s: float = 300) -> None:
    """Wait for the detector's ``nodeDescribed`` of every node: it is up and has applied the
    connections, so its start-up is not counted in the first crashes' delays."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_nodes, p) for p in range(settings.partitions)]
        deadline = time.time() + timeout_s
        while sum((await consumer.end_offsets(tps)).values()) < count:
            if time.time() > deadline:
                raise TimeoutError("the detector did not describe the nodes")
            await asyncio.sleep(0.1)  # polling the topic: no event to await across processes
    finally:
        await consumer.stop()


async def _listen(consumer: AIOKafkaConsumer, crashes: int, timeout_s: float) -> list[float]:
    """Runs beside the producer: each record's arrival time is taken as it is fetched."""
    delays: list[float] = []
    deadline = time.time() + timeout_s
    while len(delays) < crashes and time.time() < deadline:
        batch = await consumer.getmany(timeout_ms=100)
        arrived = time.time() * 1000
        for records in batch.values():
            for r in records:
                body = json.loads(r.value)
                if body["event"] == "nodeCrashed":
                    delays.append(arrived - (body["timestamp"] + LATENESS_MS))
    return delays


def _event(name: str, node: str, at: int, **fields: str) -> bytes:
    return json.dumps({"event": name, "timestamp": at, "id": node, **fields}).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crashes", type=int, default=100)
    parser.add_argument("--spacing-ms", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--keep-log", help="copy the detector's log here")
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:8]
    with broker() as bootstrap, tempfile.TemporaryDirectory() as work:
        topics = {f"topic_{r}": f"mediacdr.{r}.bench{suffix}" for r in ROLES}
        settings = KafkaSettings(kafka_bootstrap=bootstrap, partitions=args.partitions, **topics)
        asyncio.run(ensure_topics(settings))
        env = dict(os.environ)
        env.update({f"MEDIACDR_{k.upper()}": v for k, v in topics.items()})
        env.update(
            MEDIACDR_KAFKA_BOOTSTRAP=bootstrap,
            MEDIACDR_PARTITIONS=str(args.partitions),
            MEDIACDR_DETECTOR_APP_ID=f"mediacdr-bench{suffix}",
            MEDIACDR_DETECTOR_DATA_DIR=str(Path(work) / "detector"),
        )
        log = Path(work) / "detector.log"
        with detector(env, log):
            delays = asyncio.run(play(settings, args.crashes, args.spacing_ms))
        if args.keep_log:
            Path(args.keep_log).write_bytes(log.read_bytes())
        if len(delays) < args.crashes:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            sys.exit(f"only {len(delays)} of {args.crashes} crashes were decided")
    print(f"crashes: {len(delays)}  partitions: {args.partitions}  spacing: {args.spacing_ms} ms")
    print(
        "nodeCrashed on the CDR topic − (deadline + allowed lateness), ms: "
        f"p50 {percentile(delays, 0.5):.0f}  p90 {percentile(delays, 0.9):.0f}  "
        f"p99 {percentile(delays, 0.99):.0f}  max {max(delays):.0f}  "
        f"mean {statistics.mean(delays):.0f}  min {min(delays):.0f}"
    )


if __name__ == "__main__":
    main()
