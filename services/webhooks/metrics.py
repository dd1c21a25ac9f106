"""The webhooks service's Prometheus metrics (names are part of the contract)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["ATTEMPT_SECONDS", "DELIVERIES", "ENQUEUED", "QUEUE_DEPTH"]

DELIVERIES = Counter(
    "mediacdr_webhook_deliveries",
    "Delivery attempts by subscription and outcome (delivered, retry, failed, disabled).",
    ["subscription", "outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "mediacdr_webhook_attempt_seconds",
    "Duration of one HTTP attempt, answered or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge(
    "mediacdr_webhook_queue_depth",
    "Pending deliveries per subscription (waiting, retrying, or held by a disabled one).",
    ["subscription"],
)
ENQUEUED = Counter(
    "mediacdr_webhook_enqueued",
    "Deliveries written to the outbox (one per CDR record and interested subscription).",
)
