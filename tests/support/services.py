"""Running mediacdr services as real processes for e2e tests, isolated by unique topic names."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.config import KafkaSettings
from services.ops.tail import TailedRecord, collect, read_topic
from services.topics import ensure_topics

__all__ = ["Deployment", "cli", "new_deployment", "running_service"]

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("liveness", "sessions", "cdr", "nodes", "notifications", "deadletter")


@dataclass(frozen=True)
class Deployment:
    """One isolated mediacdr deployment on a shared broker: its own topics and app id."""

    bootstrap: str
    suffix: str
    workdir: Path
    partitions: int = 3

    def topic(self, role: str) -> str:
        return f"mediacdr.{role}.{self.suffix}"

    @property
    def app_id(self) -> str:
        return f"mediacdr-t{self.suffix}"

    def kafka_settings(self) -> KafkaSettings:
        topics = {f"topic_{role}": self.topic(role) for role in ROLES}
        return KafkaSettings(kafka_bootstrap=self.bootstrap, partitions=self.partitions, **topics)

    def wait(
        self,
        role: str,
        count: int,
        predicate: Callable[[TailedRecord], bool] | None = None,
        timeout: float = 90,
    ) -> list[TailedRecord]:
        """Records on the ``role`` topic, once ``count`` of them match (a broker long poll)."""
        match = predicate or (lambda _r: True)
        topic = self.topic(role)
        return asyncio.run(
            collect(self.bootstrap, topic, count=count, timeout_s=timeout, predicate=match)
        )

    def everything(self, role: str) -> list[TailedRecord]:
        """Everything on the ``role`` topic now, up to the end offsets it had when asked."""

        async def read() -> list[TailedRecord]:
            return [r async for r in read_topic(self.bootstrap, self.topic(role))]

        return asyncio.run(read())

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "MEDIACDR_KAFKA_BOOTSTRAP": self.bootstrap,
                "MEDIACDR_PARTITIONS": str(self.partitions),
                "MEDIACDR_DETECTOR_APP_ID": self.app_id,
                "MEDIACDR_DETECTOR_DATA_DIR": str(self.workdir / "detector"),
                "MEDIACDR_PROJECTOR_GROUP_ID": f"mediacdr-projector-{self.suffix}",
                "MEDIACDR_WEBHOOK_GROUP_ID": f"mediacdr-webhooks-{self.suffix}",
                "MEDIACDR_DATABASE_URL": f"sqlite:///{self.workdir / 'mediacdr.db'}",
                **{f"MEDIACDR_TOPIC_{role.upper()}": self.topic(role) for role in ROLES},
            }
        )
        env.update(extra)
        return env


def new_deployment(bootstrap: str, workdir: Path, partitions: int = 3) -> Deployment:
    """A deployment with its six topics created."""
    deployment = Deployment(bootstrap, uuid.uuid4().hex[:10], workdir, partitions)
    asyncio.run(ensure_topics(deployment.kafka_settings()))
    return deployment


@contextmanager
def running_service(
    deployment: Deployment, *args: str, log_name: str | None = None, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`mediacdr ARGS…` as a child process in its own process group; stopped (and reaped) after."""
    log_path = deployment.workdir / f"{log_name or args[0]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services", *args],
            cwd=ROOT,
            env=deployment.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def cli(
    deployment: Deployment, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """`mediacdr ARGS…` run to completion with the deployment's environment."""
    done = subprocess.run(
        [sys.executable, "-m", "services", *args],
        cwd=ROOT,
        env=deployment.env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done
