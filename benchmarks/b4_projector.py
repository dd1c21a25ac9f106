"""B4: projector throughput — CDR events/s into SQL, on PostgreSQL and SQLite — and the time to
rebuild the projection from a million CDR events.

Method: N CDR records (sessions with three participants; the detector's own output builder) are
put on a fresh CDR topic once; each run then replays them into a fresh, migrated database with
`mediacdr rebuild`'s code path (the projector's batch step: dedup by event id, merged upserts,
positions, one transaction per 5,000 records) and is timed from the first read to the last
commit.

The rebuild: M CDR records of the same workload (1,000,000 at size `full`), streamed onto a CDR
topic of their own once, are replayed the same way: into PostgreSQL in every run, into SQLite in
one run only (it takes as long again). Each figure is the time of the `rebuild` call (not the
start of a process), against the target of ≤ 120 s for a million events on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from benchmarks.infra import Bench, Deployment, produce
from benchmarks.report import Result
from benchmarks.workloads import cdr_record_stream
from services.config import DetectorSettings, ProjectorSettings
from services.projector.rebuild import rebuild

__all__ = ["run"]

PER_SESSION = 8  # CDR records of a session with three participants
REBUILD_TARGET_S = 120.0
REBUILD_TARGET_EVENTS = 1_000_000


def run(bench: Bench, events: int, runs: int, rebuild_events: int = 0) -> list[Result]:
    results = _throughput(bench, events, runs)
    if rebuild_events:
        results += _rebuild(bench, rebuild_events, runs)
    return results


def _throughput(bench: Bench, events: int, runs: int) -> list[Result]:
    d, count = _loaded(bench, events)
    results = []
    for backend in _backends(bench):
        rates = [count / _replay(bench, d, backend, count) for _ in range(runs)]
        results.append(
            Result(
                "B4",
                f"projector, {backend}",
                "CDR events/s",
                rates,
                target=">= 10,000/s" if backend == "postgresql" else None,
                met=min(rates) >= 10_000 if backend == "postgresql" else None,
                note=f"{count:,} events per run; each run a rebuild into a fresh database",
            )
        )
    return results


def _rebuild(bench: Bench, events: int, runs: int) -> list[Result]:
    d, count = _loaded(bench, events)
    results = []
    for backend in _backends(bench):
        judged = backend == "postgresql" and count >= REBUILD_TARGET_EVENTS
        n = runs if backend == "postgresql" else 1
        seconds = [_replay(bench, d, backend, count) for _ in range(n)]
        rates = ", ".join(f"{count / s:,.0f}" for s in seconds)
        results.append(
            Result(
                "B4",
                f"rebuild of {count:,} CDR events, {backend}",
                "s",
                seconds,
                target=f"<= {REBUILD_TARGET_S:.0f} s" if judged else None,
                met=max(seconds) <= REBUILD_TARGET_S if judged else None,
                note=(
                    f"`rebuild` of one CDR topic of {count:,} events into a fresh database, "
                    f"{n} run{'s' if n > 1 else ''}"
                ),
                extra={
                    "events/s per run": rates,
                    "events/s (median)": f"{count / statistics.median(seconds):,.0f}",
                },
            )
        )
    return results


def _loaded(bench: Bench, events: int) -> tuple[Deployment, int]:
    """A deployment whose CDR topic holds about ``events`` records (whole sessions)."""
    d = bench.deployment()
    sessions = max(1, events // PER_SESSION)
    settings = DetectorSettings(**d.kafka_settings().model_dump())
    produce(bench.bootstrap, cdr_record_stream(settings, sessions))
    return d, sessions * PER_SESSION


def _backends(bench: Bench) -> list[str]:
    return ["postgresql", "sqlite"] if bench.postgres_url else ["sqlite"]


def _replay(bench: Bench, d: Deployment, backend: str, expected: int) -> float:
    """Seconds for `rebuild` to project ``d``'s topics into a fresh database of ``backend``."""
    url = bench.fresh_database(backend)
    projector = ProjectorSettings(**d.kafka_settings().model_dump(), database_url=url)
    started = time.perf_counter()
    report = asyncio.run(rebuild(projector))
    elapsed = time.perf_counter() - started
    assert report.totals.events == expected, report
    return elapsed
