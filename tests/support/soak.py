"""The soak: simulator load for N minutes with faults injected one after another, then every
invariant of the fault matrix checked once over everything that happened.

    make soak                                   # 30 minutes (SOAK_MINUTES=…)
    .venv/bin/python -m tests.support.soak --minutes 30 [--seed S] [--faults kill-projector,…]

It starts a broker and a PostgreSQL server of its own (tests/support/lab.py), the detector, the
projector and the webhooks service, and a webhook receiver. The load is a chain of 60 s stories
of `mediacdr simulate --mode max --rate …` (each starts once the previous one's last decision is
due, so timestamps never drift from the clock); the faults come every ``--fault-every`` seconds in
a seeded random order. A status line every ``--status-every`` seconds; at the end the invariant
report, and exit status 0 only when every invariant holds. The suite runs a 2-minute version
(tests/e2e/test_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select

from services.ops.tail import topic_partitions
from services.store import make_engine, models
from tests.support.invariants import InvariantReport
from tests.support.lab import Lab, Load, dedicated_infra, fault_seed

__all__ = ["FAULTS", "SoakResult", "main", "run_soak"]

CHUNK_S = 60  # simulated seconds per story
# Records per second: well above what a story of this cluster produces (about 55), so records
# are stamped ahead of the clock. A producer that falls behind the clock by more than the allowed
# lateness sends input the detector may judge late (docs/RELIABILITY.md, known limits).
RATE = 90
POSTGRES_DOWN_S = 30

FAULTS: dict[str, Callable[[Lab], None]] = {
    "kill-detector": lambda lab: lab.kill_9("detector", lab.rng.uniform(0, 2)),
    "kill-projector": lambda lab: lab.kill_9("projector", lab.rng.uniform(0, 1)),
    "kill-webhooks": lambda lab: lab.kill_9("webhooks", lab.rng.uniform(0, 1)),
    "restart-broker": lambda lab: lab.restart_broker(),
    "stop-postgres": lambda lab: lab.postgres_outage(POSTGRES_DOWN_S),
    "receiver-trouble": lambda lab: lab.receiver_trouble(failing_s=8, hanging_s=8),
}


@dataclass
class SoakResult:
    report: InvariantReport
    events: list[str]
    faults: Counter[str] = field(default_factory=Counter)
    stories: int = 0

    def text(self) -> str:
        done = ", ".join(f"{name} ×{n}" for name, n in sorted(self.faults.items()))
        return "\n".join(
            [
                *self.events,
                f"{self.stories} stories, faults: {done or 'none'}",
                self.report.text(),
            ]
        )


def run_soak(
    minutes: float,
    workdir: Path,
    *,
    seed: int,
    faults: Sequence[str] = tuple(FAULTS),
    fault_every_s: float = 60,
    status_every_s: float = 30,
    out: Callable[[str], None] = print,
) -> SoakResult:
    rng = random.Random(seed)
    with dedicated_infra(workdir / "infra") as infra:
        lab = Lab(infra, workdir / "deployment", seed, echo=out)
        try:
            lab.start()
            result = _soak(lab, rng, minutes * 60, faults, fault_every_s, status_every_s, out)
        finally:
            lab.close()
    return result


def _soak(
    lab: Lab,
    rng: random.Random,
    length_s: float,
    faults: Sequence[str],
    fault_every_s: float,
    status_every_s: float,
    out: Callable[[str], None],
) -> SoakResult:
    started = time.monotonic()
    end = started + length_s
    done: Counter[str] = Counter()
    order: list[str] = []
    load: Load | None = None
    horizon_ms, stories, story_ms = 0, 0, 0
    crashes: int | None = 0
    fault: threading.Thread | None = None
    next_fault = started + min(fault_every_s, length_s / 4)
    next_status = started + status_every_s
    while True:
        now = time.monotonic()
        if load is not None and not load.running():
            try:
                summary = load.finish()
            except RuntimeError as e:  # its producer gave up during a broker outage
                lab.log(f"a story ended early: {str(e)[:200]}")
                summary = {"horizon_ms": story_ms + (CHUNK_S + 30) * 1000}
                crashes = None  # the simulator's count is lost; the reference still holds
            horizon_ms = max(horizon_ms, summary["horizon_ms"])
            if crashes is not None:
                crashes += summary["crashes"]
            stories, load = stories + 1, None
        broker_down = fault is not None and fault.is_alive() and fault.name == "restart-broker"
        if load is None and now < end and time.time() * 1000 > horizon_ms and not broker_down:
            story_ms = int(time.time() * 1000)
            load = lab.load(min(CHUNK_S, end - now), RATE, seed=lab.seed + stories)
        if faults and now < end and now >= next_fault and (fault is None or not fault.is_alive()):
            if not order:
                order = rng.sample(list(faults), len(faults))
            name = order.pop()
            done[name] += 1
            fault = threading.Thread(target=FAULTS[name], args=(lab,), name=name, daemon=True)
            fault.start()
            next_fault = now + fault_every_s
        if now >= next_status:
            out(_status(lab, now - started, length_s, sum(done.values())))
            next_status = now + status_every_s
        if now >= end and load is None and (fault is None or not fault.is_alive()):
            break
        time.sleep(0.5)  # the soak's own clock: faults and stories are due by time
    lab.log(f"load and faults over after {time.monotonic() - started:.0f} s; checking")
    summary = {"horizon_ms": horizon_ms} | ({} if crashes is None else {"crashes": crashes})
    report = lab.verify(summary, timeout_s=300)
    return SoakResult(report, list(lab.events), done, stories)


def _status(lab: Lab, elapsed: float, length: float, faults: int) -> str:
    d = lab.deployment
    sizes = asyncio.run(
        _sizes(d.bootstrap, [d.topic("liveness"), d.topic("sessions"), d.topic("cdr")])
    )
    try:
        engine = make_engine(lab.database_url)
        with engine.connect() as conn:
            projected = conn.execute(
                select(func.count()).select_from(models.cdr_events)
            ).scalar_one()
        engine.dispose()
    except Exception:  # PostgreSQL may be the fault of the moment
        projected = -1
    up = [n for n, s in lab.services.items() if s.exited() is None]
    inputs = "?" if min(sizes) < 0 else str(sizes[0] + sizes[1])  # -1: the broker is down
    cdr = "?" if sizes[2] < 0 else str(sizes[2])
    return (
        f"[{elapsed:5.0f}/{length:.0f} s] faults {faults} | input {inputs} | CDR {cdr} | "
        f"in SQL {projected if projected >= 0 else '?'} | "
        f"delivered {len(lab.receiver.delivered_ids())} | up: {', '.join(up)}"
    )


async def _sizes(bootstrap: str, topics: list[str]) -> list[int]:
    """Records on each topic (end offsets; the broker may be the fault of the moment: -1)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        async with asyncio.timeout(10):
            await consumer.start()
            sizes = []
            for topic in topics:
                tps = await topic_partitions(
                    bootstrap, topic, asyncio.get_running_loop().time() + 5
                )
                sizes.append(sum((await consumer.end_offsets(tps)).values()))
            return sizes
    except Exception:
        return [-1] * len(topics)
    finally:
        await consumer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument(
        "--seed", type=int, default=None, help="default: MEDIACDR_FAULT_SEED or random"
    )
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"of {', '.join(FAULTS)}")
    parser.add_argument("--fault-every", type=float, default=60, help="seconds between faults")
    parser.add_argument(
        "--status-every", type=float, default=30, help="seconds between status lines"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (logs, data)")
    args = parser.parse_args(argv)
    names = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        parser.error(f"unknown faults: {', '.join(unknown)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mediacdr-soak-"))
    seed = args.seed if args.seed is not None else fault_seed()
    print(
        f"soak: {args.minutes:g} min, seed {seed}, faults {', '.join(names) or 'none'}, "
        f"logs in {workdir}",
        flush=True,
    )
    result = run_soak(
        args.minutes,
        workdir,
        seed=seed,
        faults=names,
        fault_every_s=args.fault_every,
        status_every_s=args.status_every,
        out=lambda line: print(line, flush=True),
    )
    print(
        f"{result.stories} stories, faults: "
        + (", ".join(f"{k} ×{v}" for k, v in sorted(result.faults.items())) or "none")
    )
    print(result.report.text())
    print("soak: " + ("every invariant holds" if result.report.ok else "INVARIANTS BROKEN"))
    return 0 if result.report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
