"""The real parts a benchmark runs on: a local broker, PostgreSQL, fresh topics and databases,
and mediacdr services as processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.config import KafkaSettings
from services.localdev.kafka import running_kafka
from services.localdev.postgres import running_postgres
from services.store.migrate import upgrade
from services.topics import ensure_topics

__all__ = ["Bench", "Record", "bench_infra", "produce"]

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("liveness", "sessions", "cdr", "nodes", "notifications", "deadletter")
Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]], int | None]


@dataclass
class Bench:
    bootstrap: str
    postgres_url: str | None
    workdir: Path
    partitions: int = 12

    def deployment(self) -> Deployment:
        d = Deployment(self, uuid.uuid4().hex[:10])
        asyncio.run(ensure_topics(d.kafka_settings()))
        return d

    def fresh_database(self, backend: str) -> str:
        if backend == "sqlite":
            url = f"sqlite:///{self.workdir / f'{uuid.uuid4().hex[:8]}.db'}"
        else:
            assert self.postgres_url is not None
            name = f"b_{uuid.uuid4().hex[:12]}"
            admin = create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            url = make_url(self.postgres_url).set(database=name).render_as_string(False)
        upgrade(url)
        return url


@dataclass
class Deployment:
    bench: Bench
    suffix: str

    def topic(self, role: str) -> str:
        return f"mediacdr.{role}.{self.suffix}"

    def kafka_settings(self) -> KafkaSettings:
        topics = {f"topic_{role}": self.topic(role) for role in ROLES}
        return KafkaSettings(
            kafka_bootstrap=self.bench.bootstrap, partitions=self.bench.partitions, **topics
        )

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "MEDIACDR_KAFKA_BOOTSTRAP": self.bench.bootstrap,
                "MEDIACDR_PARTITIONS": str(self.bench.partitions),
                "MEDIACDR_DETECTOR_APP_ID": f"mediacdr-b{self.suffix}",
                "MEDIACDR_DETECTOR_DATA_DIR": str(self.bench.workdir / f"detector-{self.suffix}"),
                "MEDIACDR_PROJECTOR_GROUP_ID": f"mediacdr-projector-{self.suffix}",
                "MEDIACDR_WEBHOOK_GROUP_ID": f"mediacdr-webhooks-{self.suffix}",
                **{f"MEDIACDR_TOPIC_{role.upper()}": self.topic(role) for role in ROLES},
            }
        )
        env.update(extra)
        return env

    @contextmanager
    def service(
        self, *args: str, log_name: str | None = None, **env: str
    ) -> Iterator[subprocess.Popen[bytes]]:
        log = self.bench.workdir / f"{log_name or args[0]}-{self.suffix}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "services", *args],
                cwd=ROOT,
                env=self.env(**env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                yield process
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait(timeout=30)


async def _produce(bootstrap: str, records: Iterable[Record]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        pending = []
        for topic, key, value, headers, ts in records:
            pending.append(
                await producer.send(topic, value, key=key, headers=headers, timestamp_ms=ts)
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def produce(bootstrap: str, records: Iterable[Record]) -> None:
    asyncio.run(_produce(bootstrap, records))


@contextmanager
def bench_infra(workdir: Path, *, postgres: bool = True) -> Iterator[Bench]:
    with ExitStack() as stack:
        bootstrap = os.environ.get("MEDIACDR_KAFKA_BOOTSTRAP") or stack.enter_context(
            running_kafka(workdir / "kafka")
        )
        pg = None
        if postgres:
            pg = os.environ.get("MEDIACDR_TEST_POSTGRES_URL") or stack.enter_context(
                running_postgres(workdir / "postgres")
            )
        yield Bench(bootstrap, pg, workdir)
