"""Running mediacdr services as real processes for e2e tests, isolated by unique topic names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Deployment", "new_deployment", "running_service"]

ROOT = Path(__file__).resolve().parents[2]


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

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "MEDIACDR_KAFKA_BOOTSTRAP": self.bootstrap,
                "MEDIACDR_PARTITIONS": str(self.partitions),
                "MEDIACDR_DETECTOR_APP_ID": self.app_id,
                "MEDIACDR_DETECTOR_DATA_DIR": str(self.workdir / "detector"),
                **{
                    f"MEDIACDR_TOPIC_{role.upper()}": self.topic(role)
                    for role in (
                        "liveness",
                        "sessions",
                        "cdr",
                        "nodes",
                        "notifications",
                        "deadletter",
                    )
                },
            }
        )
        env.update(extra)
        return env


def new_deployment(bootstrap: str, workdir: Path, partitions: int = 3) -> Deployment:
    return Deployment(bootstrap, uuid.uuid4().hex[:10], workdir, partitions)


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
