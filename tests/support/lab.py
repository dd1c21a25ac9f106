"""A fault lab: one mediacdr deployment (detector, projector, webhooks service and a webhook
receiver) on a broker and a PostgreSQL server that the lab may stop, under simulator load.

The broker and the server are the lab's own, never the test session's: restarting them must not
disturb other tests. Faults are injected at random moments from a seeded ``random.Random`` (the
seed is in every report, so a failure can be replayed with ``MEDIACDR_FAULT_SEED``); timing on
a loaded machine still varies, which is the point of running them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services.core.rules import RuleSettings
from services.localdev import free_ports
from services.localdev.kafka import LocalKafka, fetch_jars, project_root
from services.localdev.postgres import PostgresServer, postgres_server
from services.ops.tail import collect
from services.store.migrate import upgrade
from tests.support.databases import fresh_database_url
from tests.support.invariants import InvariantReport, check_invariants
from tests.support.receiver import Receiver
from tests.support.services import ROOT, Deployment, Service, new_deployment

__all__ = ["Broker", "Infra", "Lab", "Load", "dedicated_infra", "fault_seed", "parse_summary"]

#: A fast retry schedule that outlasts any bad period the faults make (60 s of retries).
RETRY_SCHEDULE = json.dumps([0, 0.2, 0.5] + [1.0] * 60)
WEBHOOK_TIMEOUT_S = 1.0


def fault_seed() -> int:
    """``MEDIACDR_FAULT_SEED`` to replay a run, else a fresh one (reported with the results)."""
    configured = os.environ.get("MEDIACDR_FAULT_SEED")
    return int(configured) if configured else random.SystemRandom().randrange(1, 10**6)


@dataclass
class Broker:
    """A broker that can be restarted on the same ports and data."""

    local: LocalKafka
    port: int
    controller_port: int
    bootstrap: str

    def stop(self) -> None:
        self.local.stop()

    def start(self) -> None:
        self.local.start(self.port, self.controller_port, keep_data=True)


@dataclass
class Infra:
    broker: Broker
    postgres: PostgresServer
    workdir: Path


@contextmanager
def dedicated_infra(workdir: Path) -> Iterator[Infra]:
    """A broker and a PostgreSQL server of the lab's own, stopped (and removed) after."""
    with ExitStack() as stack:
        local = LocalKafka(workdir / "kafka", fetch_jars(project_root()))
        port, controller_port = free_ports(2)
        bootstrap = local.start(port, controller_port)
        stack.callback(local.stop)
        postgres = stack.enter_context(postgres_server(workdir / "postgres"))
        yield Infra(Broker(local, port, controller_port, bootstrap), postgres, workdir)


def parse_summary(stdout: str) -> dict[str, int]:
    """The counts `mediacdr simulate` prints at the end."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s+(\w+)\s+(-?\d+)$", stdout, re.MULTILINE)}


class Load:
    """`mediacdr simulate` in max mode, running in the background."""

    def __init__(self, deployment: Deployment, out: Path, *args: str) -> None:
        self.out = out
        with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services", "simulate", *args],
                cwd=ROOT,
                env=deployment.env(),
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self, timeout: float = 300) -> dict[str, int]:
        """Wait for the end of the story; its counts (sessions, crashes, horizon_ms, …)."""
        status = self.process.wait(timeout=timeout)
        text = self.out.read_text()
        if status != 0:
            err = self.out.with_suffix(".err").read_text()[-2000:]
            raise RuntimeError(f"simulate exited {status}: {err}")
        return parse_summary(text)


def simulate_args(seed: int, duration_s: float, rate: int) -> list[str]:
    """A busy little cluster with every kind of node fault and malformed input."""
    return [
        "--mode=max",
        f"--rate={rate}",
        f"--duration={duration_s}",
        f"--seed={seed}",
        "--nodes=6",
        "--session-rate=2",
        "--mean-session=12",
        "--faults=chaos",
        "--crash-rate=100",
        "--blip-rate=100",
        "--flap-rate=20",
        "--shutdown-rate=20",
        "--malformed-rate=20",
        "--node-return=5",
    ]


@dataclass
class Lab:
    """One deployment on ``infra`` with its three services and a receiver."""

    infra: Infra
    workdir: Path
    seed: int
    rng: random.Random = field(init=False)
    deployment: Deployment = field(init=False)
    database_url: str = field(init=False)
    receiver: Receiver = field(init=False)
    services: dict[str, Service] = field(init=False)
    events: list[str] = field(default_factory=list)  # what was done to it, for the report
    echo: Callable[[str], None] = field(default=lambda _line: None)  # each event as it happens
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.deployment = new_deployment(self.infra.broker.bootstrap, self.workdir)
        self.database_url = fresh_database_url("postgresql", self.workdir, self.infra.postgres.url)
        upgrade(self.database_url)
        self.receiver = Receiver()
        self.receiver.start()
        db = {"MEDIACDR_DATABASE_URL": self.database_url}
        hooks = {
            "MEDIACDR_WEBHOOK_ENDPOINT": self.receiver.url,
            "MEDIACDR_WEBHOOK_RETRY_SCHEDULE_S": RETRY_SCHEDULE,
            "MEDIACDR_WEBHOOK_TIMEOUT_S": str(WEBHOOK_TIMEOUT_S),
            "MEDIACDR_WEBHOOK_POLL_MS": "100",
        }
        d = self.deployment
        self.services = {
            "detector": Service(d, "detector", "detector"),
            "projector": Service(d, "projector", "projector", **db),
            "webhooks": Service(d, "webhooks", "webhooks", **db, **hooks),
        }

    def log(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self._started:6.1f}s {what}")
        self.echo(self.events[-1])

    def start(self) -> None:
        """Start the services; return once the detector consumes (its first event-time mark is
        on its internal topic), so the load starts on a detector that keeps up."""
        for service in self.services.values():
            service.start()
        internal = f"{self.deployment.app_id}-nodeevents"
        asyncio.run(collect(self.deployment.bootstrap, internal, count=1, timeout_s=120))
        self.log("services started, the detector consumes")

    def close(self) -> None:
        for service in self.services.values():
            service.stop()
        self.receiver.stop()

    def load(self, duration_s: float, rate: int, seed: int | None = None) -> Load:
        """A story of ``duration_s`` simulated seconds (its own ``seed``, else the lab's)."""
        story = self.seed if seed is None else seed
        out = self.workdir / f"simulate-{story}-{len(self.events)}.out"
        self.log(f"load: {duration_s:.0f} s story at {rate} records/s, seed {story}")
        return Load(self.deployment, out, *simulate_args(story, duration_s, rate))

    def sleep(self, seconds: float) -> None:
        """Wait for the moment a fault is due: the schedule, not a synchronisation."""
        time.sleep(max(0.0, seconds))

    # -- faults ---------------------------------------------------------------------------------

    def kill_9(self, name: str, down_s: float) -> None:
        self.services[name].kill_9()
        self.log(f"kill -9 {name}; down {down_s:.1f} s")
        self.sleep(down_s)
        self.services[name].start()

    def restart_broker(self, down_s: float = 0.0) -> None:
        """Stop the broker, keep it down ``down_s`` more seconds, start it again."""
        began = time.monotonic()
        self.infra.broker.stop()
        self.sleep(down_s)
        self.infra.broker.start()
        self.log(f"broker restarted (down {time.monotonic() - began:.1f} s)")

    def postgres_outage(self, seconds: float) -> None:
        self.infra.postgres.stop()
        self.log(f"PostgreSQL stopped for {seconds:.0f} s")
        self.sleep(seconds)
        self.infra.postgres.start()
        self.log("PostgreSQL started")

    def receiver_trouble(self, failing_s: float, hanging_s: float) -> None:
        """500 for ``failing_s``, then answers later than the sender waits for ``hanging_s``."""
        self.receiver.answer = lambda _p, _h, _b: 500
        self.log(f"receiver answers 500 for {failing_s:.0f} s")
        self.sleep(failing_s)
        self.receiver.answer = _hanging
        self.log(f"receiver times out for {hanging_s:.0f} s")
        self.sleep(hanging_s)
        self.receiver.answer = lambda _p, _h, _b: 204
        self.log("receiver answers 204")

    # -- the end ----------------------------------------------------------------------------------

    def exits(self) -> list[str]:
        """Services whose current life ended by itself (not by a kill of ours)."""
        return [
            f"{name} exited with {status}"
            for name, service in self.services.items()
            if (status := service.exited()) is not None
        ]

    def verify(self, summary: dict[str, int], timeout_s: float = 180) -> InvariantReport:
        """Once every injected crash is due: converge, then check every invariant."""
        horizon = summary.get("horizon_ms", 0) + RuleSettings().grace_ms
        self.sleep(horizon / 1000 - time.time())  # the story's last decision is due by then
        exits = self.exits()
        report = check_invariants(
            self.deployment,
            database_url=self.database_url,
            postgres_url=self.infra.postgres.url,
            receiver=self.receiver,
            settings=RuleSettings(),
            simulated_crashes=summary.get("crashes"),
            timeout_s=timeout_s,
            tmp_dir=self.workdir,
        )
        exits += [e for e in self.exits() if e not in exits]
        report.add("no service stopped by itself", exits, "each ran until killed or stopped")
        report.figures["seed"] = self.seed
        return report


def _hanging(_p: str, _h: dict[str, str], _b: bytes) -> int:
    """Answer after the sender gave up waiting (a timeout for it), and never with a 2xx."""
    time.sleep(WEBHOOK_TIMEOUT_S * 2)
    return 504
