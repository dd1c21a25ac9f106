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

from services.config import KafkaSettings, ProjectorSettings
from services.ops.tail import TailedRecord, collect, read_topic
from services.topics import ensure_topics

__all__ = ["Deployment", "Service", "cli", "kill_9", "new_deployment", "running_service"]

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

    def projector_settings(self, database_url: str) -> ProjectorSettings:
        """What the projector (and `rebuild`) of this deployment runs with on ``database_url``."""
        topics = {f"topic_{role}": self.topic(role) for role in ("cdr", "nodes")}
        return ProjectorSettings(
            kafka_bootstrap=self.bootstrap,
            partitions=self.partitions,
            database_url=database_url,
            **topics,
        )

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
    process = _spawn(deployment, args, deployment.workdir / f"{log_name or args[0]}.log", env)
    try:
        yield process
    finally:
        _stop(process)


def _spawn(
    deployment: Deployment, args: tuple[str, ...], log_path: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "services", *args],
            cwd=ROOT,
            env=deployment.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_9(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process's whole group (no shutdown code runs) and reap it."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


class Service:
    """A service that a fault test kills and restarts: each life logs to ``<name>-<n>.log``."""

    def __init__(self, deployment: Deployment, name: str, *args: str, **env: str) -> None:
        self.deployment, self.name, self.args, self.env = deployment, name, args, env
        self.lives = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.lives += 1
        log_path = self.deployment.workdir / f"{self.name}-{self.lives}.log"
        self.process = _spawn(self.deployment, self.args, log_path, self.env)

    def kill_9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            kill_9(self.process)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def exited(self) -> int | None:
        """The exit status of a life that ended by itself, else None."""
        return None if self.process is None else self.process.poll()

    def logs(self) -> str:
        paths = [self.deployment.workdir / f"{self.name}-{n}.log" for n in range(1, self.lives + 1)]
        return "".join(path.read_text(errors="replace") for path in paths if path.exists())


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
