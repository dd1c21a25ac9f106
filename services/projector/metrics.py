"""The projector's Prometheus metrics (names are part of the contract; docs/OPERATIONS.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from services.projector.batches import BatchReport

__all__ = ["BATCH_SECONDS", "RECORDS", "record"]

RECORDS = Counter(
    "mediacdr_projector_records",
    "Records the projector read, by outcome (applied, duplicate, fact, or the skip reason).",
    ["outcome"],
)
BATCH_SECONDS = Histogram(
    "mediacdr_projector_batch_seconds",
    "Time to write one batch (rows and positions in one transaction).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def record(report: BatchReport) -> None:
    RECORDS.labels("applied").inc(report.events)
    RECORDS.labels("duplicate").inc(report.duplicates)
    RECORDS.labels("fact").inc(report.facts)
    for reason, count in report.skipped.items():
        RECORDS.labels(reason).inc(count)
