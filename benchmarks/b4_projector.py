"""B4: projector throughput — CDR events/s into SQL, on PostgreSQL and SQLite.

Method: N CDR records (sessions with three participants; the detector's own output builder) are
put on a fresh CDR topic once; each run then replays them into a fresh, migrated database with
`mediacdr rebuild`'s code path (the projector's batch step: dedup by event id, merged upserts,
positions, one transaction per 5,000 records) and is timed from the first read to the last
commit.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.infra import Bench, produce
from benchmarks.report import Result
from benchmarks.workloads import cdr_records
from services.config import DetectorSettings, ProjectorSettings
from services.projector.rebuild import rebuild

__all__ = ["run"]


def run(bench: Bench, events: int, runs: int) -> list[Result]:
    d = bench.deployment()
    settings = DetectorSettings(**d.kafka_settings().model_dump())
    records = cdr_records(settings, max(1, events // 8))
    produce(bench.bootstrap, records)
    results = []
    backends = ["postgresql", "sqlite"] if bench.postgres_url else ["sqlite"]
    for backend in backends:
        rates = []
        for _ in range(runs):
            url = bench.fresh_database(backend)
            projector = ProjectorSettings(**d.kafka_settings().model_dump(), database_url=url)
            started = time.perf_counter()
            report = asyncio.run(rebuild(projector))
            elapsed = time.perf_counter() - started
            assert report.totals.events == len(records), report
            rates.append(len(records) / elapsed)
        results.append(
            Result(
                "B4",
                f"projector, {backend}",
                "CDR events/s",
                rates,
                target=">= 10,000/s" if backend == "postgresql" else None,
                met=min(rates) >= 10_000 if backend == "postgresql" else None,
                note=f"{len(records):,} events per run; each run a rebuild into a fresh database",
            )
        )
    return results
