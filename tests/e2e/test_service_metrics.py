"""`/health` and `/metrics` of the running detector, projector and webhooks (CONTRACT §14).

Each service runs as a process with its own `MEDIACDR_METRICS_ADDR`; a bad record and a node
connecting go through the pipeline, and the counters they move are read from the endpoints.
An HTTP endpoint has nothing to await, so the test polls it, with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

from tests.support.endpoints import Endpoint, families, free_port, value
from tests.support.kafka import produce
from tests.support.services import Deployment, cli, new_deployment, running_service

SERVICES = ("detector", "projector", "webhooks")
COMMON = {"mediacdr_consumer_lag", "process_cpu_seconds_total"}
FAMILIES = {
    "detector": {
        "mediacdr_detector_events_in_total",
        "mediacdr_detector_events_out_total",
        "mediacdr_deadletters_total",
        "mediacdr_open_incidents",
        "mediacdr_crash_decision_delay_seconds",
        "mediacdr_producer_clock_skew_seconds",
    },
    "projector": {"mediacdr_projector_records_total", "mediacdr_projector_batch_seconds"},
    "webhooks": {
        "mediacdr_webhook_deliveries_total",
        "mediacdr_webhook_attempt_seconds",
        "mediacdr_webhook_queue_depth",
        "mediacdr_webhook_enqueued_total",
    },
}
CHECKS = {"detector": {"marks"}, "projector": {"consumer"}, "webhooks": {"outbox", "sender"}}


def liveness(d: Deployment, *values: bytes) -> None:
    asyncio.run(produce(d.bootstrap, [(d.topic("liveness"), b"media_metrics", v) for v in values]))


def connected() -> bytes:
    event = {
        "event": "nodeConnected",
        "timestamp": int(time.time() * 1000),
        "id": "media_metrics",
        "environmentId": "i-metrics",
        "ip": "10.0.0.9",
        "uri": "ws://10.0.0.9:8888/kurento",
        "clusterId": "metrics",
    }
    return json.dumps(event).encode()


def disconnected() -> bytes:
    event = {
        "event": "nodeDisconnected",
        "timestamp": int(time.time() * 1000),
        "id": "media_metrics",
    }
    return json.dumps(event).encode()


def test_services_serve_health_and_metrics(kafka_bootstrap: str, tmp_path: Path) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    cli(d, "migrate")
    endpoints: dict[str, Endpoint] = {}
    with ExitStack() as stack:
        for name in SERVICES:
            port = free_port()
            env = {"MEDIACDR_METRICS_ADDR": f"127.0.0.1:{port}", "MEDIACDR_GRACE_MS": "500"}
            process = stack.enter_context(running_service(d, name, **env))
            endpoints[name] = Endpoint(name, port, process, tmp_path / f"{name}.log")

        for name, endpoint in endpoints.items():
            body = endpoint.poll(lambda r: r.status_code == 200, "/health", "never healthy")
            health = json.loads(body)
            assert health["status"] == "ok", health
            assert all(health[check] == "ok" for check in CHECKS[name]), health
            text = endpoint.poll(lambda r: r.status_code == 200, "/metrics", "no metrics")
            missing = (FAMILIES[name] | COMMON) - families(text)
            assert not missing, f"{name} lacks {sorted(missing)}"
            assert endpoint.poll(lambda r: r.status_code == 404, "/nothing", "no 404")

        liveness(d, b"{not json", connected())

        def detector_counted(r: httpx.Response) -> bool:
            dead = value(r.text, "mediacdr_deadletters_total", code="invalidJson")
            read = value(
                r.text, "mediacdr_detector_events_in_total", kind="liveness", event="nodeConnected"
            )
            described = value(r.text, "mediacdr_detector_events_out_total", stream="nodes")
            return dead == 1 and read == 1 and described == 1  # nodeDescribed, by the node agent

        text = endpoints["detector"].poll(detector_counted, "/metrics", "counters did not move")
        assert value(text, "mediacdr_detector_events_in_total", event="invalid") == 1
        assert value(text, "mediacdr_producer_clock_skew_seconds_count", kind="liveness") == 1
        assert value(text, "mediacdr_open_incidents") == 0

        def lag_known(service: str) -> Callable[[httpx.Response], bool]:
            return lambda r: value(r.text, "mediacdr_consumer_lag", service=service) is not None

        endpoints["detector"].poll(lag_known("detector"), "/metrics", "no detector lag")
        # the node's description, a node fact, reaches the projection
        endpoints["projector"].poll(
            lambda r: value(r.text, "mediacdr_projector_records_total", outcome="fact") == 1,
            "/metrics",
            "the node fact was not projected",
        )
        endpoints["projector"].poll(lag_known("projector"), "/metrics", "no projector lag")
        endpoints["webhooks"].poll(lag_known("webhooks"), "/metrics", "no webhooks lag")

        liveness(d, disconnected())  # for good: crashed after the (short) grace window

        def crash_counted(r: httpx.Response) -> bool:
            decided = value(r.text, "mediacdr_crash_decision_delay_seconds_count")
            facts = value(r.text, "mediacdr_detector_events_out_total", stream="nodes")
            return decided == 1 and facts == 3  # nodeDescribed, incidentOpened, incidentClosed

        text = endpoints["detector"].poll(crash_counted, "/metrics", "no crash decision")
        crashes = value(
            text, "mediacdr_detector_events_out_total", stream="cdr", event="nodeCrashed"
        )
        assert crashes == 1
        delay = value(text, "mediacdr_crash_decision_delay_seconds_sum")
        assert delay is not None
        assert -1 < delay < 30
        assert value(text, "mediacdr_open_incidents") == 0
        endpoints["projector"].poll(
            lambda r: value(r.text, "mediacdr_projector_records_total", outcome="applied") == 1,
            "/metrics",
            "nodeCrashed was not projected",
        )
