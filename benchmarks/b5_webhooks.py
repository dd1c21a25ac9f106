"""B5: webhook deliveries — signed deliveries/s to a local receiver, and CDR → delivered latency.

Method: a keep-alive HTTP/1.1 receiver (standard library, threaded) answers 204. Throughput: the
webhooks service runs (PostgreSQL outbox, a secret, default concurrency); N CDR records are
produced at once; deliveries/s = N / (last delivery − first delivery), seen by the receiver.
Latency: records are produced at 200/s, each stamped with the wall clock when sent; the receiver
notes (arrival − stamp) for each.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiokafka import AIOKafkaProducer

from benchmarks.infra import Bench, Deployment, produce
from benchmarks.report import Result
from benchmarks.workloads import cdr_records
from services.config import DetectorSettings
from services.core.webhooks import new_secret

__all__ = ["run"]


class _Server(ThreadingHTTPServer):
    # A web server's listen backlog (nginx: 511). Python's default of 5 overflows when the
    # sender opens many keep-alive connections at once, and each dropped SYN costs a 1 s
    # retransmit: measured as latency of the receiver, not of the sender.
    request_queue_size = 128


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as webhook senders use

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.arrivals.append((time.time(), body))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.arrivals)} of {count} deliveries")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait_ready(receiver: Receiver, d: Deployment, probe: list[tuple]) -> None:  # type: ignore[type-arg]
    produce(d.bench.bootstrap, probe)
    receiver.wait_for(len(probe), timeout=120)


async def _paced(bootstrap: str, topic: str, count: int, per_s: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        start = time.monotonic()
        for i in range(count):
            delay = start + i / per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now_ms = int(time.time() * 1000)
            body = {
                "event": "signalSent",
                "timestamp": now_ms,
                "sessionId": f"ses_lat{i % 50}",
                "uniqueSessionId": f"ses_lat{i % 50}_1",
                "from": None,
                "to": [],
                "type": "t",
                "data": str(i),
            }
            value = json.dumps(body, separators=(",", ":")).encode()
            await producer.send(topic, value, key=body["sessionId"].encode(), timestamp_ms=now_ms)
        await producer.flush()
    finally:
        await producer.stop()


def run(bench: Bench, deliveries: int, runs: int) -> list[Result]:
    rates, p99s, p50s = [], [], []
    for _ in range(runs):
        d = bench.deployment()
        receiver = Receiver()
        url = bench.fresh_database("postgresql" if bench.postgres_url else "sqlite")
        env = {
            "MEDIACDR_DATABASE_URL": url,
            "MEDIACDR_WEBHOOK_ENDPOINT": receiver.url,
            "MEDIACDR_WEBHOOK_SECRET": new_secret(),
            "MEDIACDR_WEBHOOK_POLL_MS": "50",
        }
        settings = DetectorSettings(**d.kafka_settings().model_dump())
        records = cdr_records(settings, max(1, deliveries // 8))
        try:
            with d.service("webhooks", **env):
                _wait_ready(receiver, d, records[:8])
                receiver.arrivals.clear()
                produce(bench.bootstrap, records[8:])
                receiver.wait_for(len(records) - 8, timeout=600)
                times = [t for t, _ in receiver.arrivals]
                rates.append((len(times) - 1) / (max(times) - min(times)))
                receiver.arrivals.clear()
                count = 600
                asyncio.run(_paced(bench.bootstrap, d.topic("cdr"), count, 200))
                receiver.wait_for(count, timeout=120)
                lat = sorted(t * 1000 - json.loads(b)["timestamp"] for t, b in receiver.arrivals)
                p50s.append(statistics.median(lat))
                p99s.append(lat[int(0.99 * (len(lat) - 1))])
        finally:
            receiver.close()
    return [
        Result(
            "B5",
            "webhooks, signed deliveries",
            "deliveries/s",
            rates,
            ">= 1,000/s",
            min(rates) >= 1000,
            f"{deliveries:,} CDR records at once; PostgreSQL outbox; concurrency 64; receiver "
            "timestamps",
        ),
        Result(
            "B5",
            "webhooks, CDR → delivered p99 at 200 events/s",
            "ms",
            p99s,
            "<= 250 ms",
            max(p99s) <= 250,
            "600 events paced at 200/s over 50 sessions; stamp at send",
            extra={"p50 (median of runs)": f"{statistics.median(p50s):.0f} ms"},
        ),
    ]
