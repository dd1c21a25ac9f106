"""The `/health` + `/metrics` server, heartbeats, the lag gauge and the detector's metric helpers.

The server is real (a loopback socket on a free port); each request is answered by its thread.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from services.core.rules.state import Incident, NodeState
from services.detector import metrics as detector_metrics
from services.detector.table_store import TableRulesStore
from services.observability import (
    Heartbeat,
    LagReporter,
    MetricsServer,
    all_healthy,
    metrics_server,
    parse_addr,
    serve_metrics,
)


class Switch:
    """A health callback the test flips."""

    def __init__(self) -> None:
        self.healthy = True
        self.calls = 0

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        self.calls += 1
        return self.healthy, {"consumer": "ok" if self.healthy else "stuck", "calls": self.calls}


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
def server(switch: Switch) -> Iterator[MetricsServer]:
    running = serve_metrics("127.0.0.1:0", switch)
    try:
        yield running
    finally:
        running.stop()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:9101", ("127.0.0.1", 9101)),
        ("localhost:0", ("localhost", 0)),
        (":9101", ("0.0.0.0", 9101)),
        ("[::1]:9101", ("::1", 9101)),
        (" 0.0.0.0:80 ", ("0.0.0.0", 80)),
    ],
)
def test_addresses_are_host_and_port(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["9101", "127.0.0.1", "127.0.0.1:http", "::1:9101", "h:70000"])
def test_a_malformed_address_says_so(addr: str) -> None:
    with pytest.raises(ValueError, match=r"MEDIACDR_METRICS_ADDR|IPv6|out of range"):
        parse_addr(addr)


def test_metrics_serves_the_default_registry(server: MetricsServer) -> None:
    detector_metrics.dead_lettered("invalidJson")
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert 'mediacdr_deadletters_total{code="invalidJson"}' in response.text
    assert "# TYPE mediacdr_crash_decision_delay_seconds histogram" in response.text
    assert "process_" in response.text or "python_info" in response.text


def test_health_follows_the_callback(server: MetricsServer, switch: Switch) -> None:
    with httpx.Client(base_url=server.url) as client:
        ok = client.get("/health")
        assert ok.status_code == 200
        assert ok.json() == {"status": "ok", "consumer": "ok", "calls": 1}
        switch.healthy = False
        bad = client.get("/health")
        assert bad.status_code == 503
        assert bad.json() == {"status": "unhealthy", "consumer": "stuck", "calls": 2}
        switch.healthy = True
        assert client.get("/health?verbose=1").status_code == 200


def test_a_failing_health_callback_is_unhealthy() -> None:
    def broken() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("no state yet")

    running = serve_metrics("127.0.0.1:0", broken)
    try:
        response = httpx.get(f"{running.url}/health")
    finally:
        running.stop()
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "error": "RuntimeError: no state yet"}


@pytest.mark.parametrize("path", ["/", "/metricsx", "/health/x", "/api/nodes"])
def test_anything_else_is_not_found(server: MetricsServer, path: str) -> None:
    assert httpx.get(f"{server.url}{path}").status_code == 404


def test_the_port_is_free_again_after_stop(switch: Switch) -> None:
    running = serve_metrics("127.0.0.1:0", switch)
    port = running.port
    assert port > 0
    running.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    again = serve_metrics(f"127.0.0.1:{port}", switch)  # SO_REUSEADDR: a restart rebinds at once
    try:
        assert httpx.get(f"{again.url}/health").status_code == 200
    finally:
        again.stop()


def test_ipv6_loopback(switch: Switch) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    running = serve_metrics("[::1]:0", switch)
    try:
        assert running.url.startswith("http://[::1]:")
        assert httpx.get(f"{running.url}/health").status_code == 200
    finally:
        running.stop()


def test_an_empty_address_serves_nothing(switch: Switch) -> None:
    with metrics_server("", switch) as none:
        assert none is None
    with metrics_server("127.0.0.1:0", switch) as running:
        assert running is not None
        assert httpx.get(f"{running.url}/health").status_code == 200
    assert switch.calls == 1


def test_a_heartbeat_is_healthy_while_recent() -> None:
    beat = Heartbeat("consumer", max_age_s=30)
    assert beat.health() == (False, {"consumer": "starting"})
    beat.beat()
    healthy, details = beat.health()
    assert healthy
    assert details["consumer"] == "ok"
    assert 0 <= details["consumer_age_s"] < 30
    beat.last = time.monotonic() - 31
    healthy, details = beat.health()
    assert not healthy
    assert details["consumer"].startswith("no progress for 3")
    beat.beat()
    beat.stop()
    assert beat.health() == (False, {"consumer": "stopped"})


def test_all_healthy_needs_every_check() -> None:
    outbox, sender = Heartbeat("outbox", 30), Heartbeat("sender", 30)
    both = all_healthy(outbox.health, sender.health)
    outbox.beat()
    healthy, details = both()
    assert not healthy
    assert details["outbox"] == "ok"
    assert details["sender"] == "starting"
    sender.beat()
    assert both()[0]


def test_lag_gauges_follow_the_latest_assignment() -> None:
    lag = LagReporter("unit-test", every_s=3600)
    assert lag.due()
    assert not lag.due()  # at most once per every_s
    lag.set({("t", 0): 5, ("t", 1): -2})
    assert sample("mediacdr_consumer_lag", service="unit-test", topic="t", partition="0") == 5
    assert sample("mediacdr_consumer_lag", service="unit-test", topic="t", partition="1") == 0
    lag.set({("t", 1): 7})  # partition 0 revoked: its series goes, not stays at 5
    assert (
        REGISTRY.get_sample_value(
            "mediacdr_consumer_lag", {"service": "unit-test", "topic": "t", "partition": "0"}
        )
        is None
    )
    assert sample("mediacdr_consumer_lag", service="unit-test", topic="t", partition="1") == 7
    lag.clear()
    assert (
        REGISTRY.get_sample_value(
            "mediacdr_consumer_lag", {"service": "unit-test", "topic": "t", "partition": "1"}
        )
        is None
    )


def test_detector_counters() -> None:
    before_in = sample("mediacdr_detector_events_in_total", kind="liveness", event="nodeConnected")
    before_bad = sample("mediacdr_detector_events_in_total", kind="session", event="invalid")
    before_dead = sample("mediacdr_deadletters_total", code="unknownEvent")
    before_out = sample(
        "mediacdr_detector_events_out_total", stream="deadletter", event="mediacdr.deadletter"
    )
    before_skew = sample("mediacdr_producer_clock_skew_seconds_count", kind="liveness")
    before_crash = sample("mediacdr_crash_decision_delay_seconds_bucket", le="0.05")

    detector_metrics.received("liveness", "nodeConnected", 0.02)
    detector_metrics.received("session", None, None)
    detector_metrics.dead_lettered("unknownEvent")
    detector_metrics.crash_decided(0.04)

    assert (
        sample("mediacdr_detector_events_in_total", kind="liveness", event="nodeConnected")
        == before_in + 1
    )
    assert (
        sample("mediacdr_detector_events_in_total", kind="session", event="invalid")
        == before_bad + 1
    )
    assert sample("mediacdr_deadletters_total", code="unknownEvent") == before_dead + 1
    assert (
        sample(
            "mediacdr_detector_events_out_total", stream="deadletter", event="mediacdr.deadletter"
        )
        == before_out + 1
    )
    assert sample("mediacdr_producer_clock_skew_seconds_count", kind="liveness") == before_skew + 1
    assert sample("mediacdr_crash_decision_delay_seconds_bucket", le="0.05") == before_crash + 1


def test_open_incidents_are_the_nodes_in_grace_on_owned_partitions() -> None:
    store = TableRulesStore({}, {})
    incident = Incident(1_000, 4_000, "disconnected", "media_a")
    store.partition = 0
    store.put_node(NodeState("media_a", life="grace", incident=incident))
    store.partition = 1
    store.put_node(NodeState("media_b", life="grace", incident=incident))
    store.put_node(NodeState("media_c"))
    assert store.open_incidents() == 2
    store.partition = 0
    store.put_node(NodeState("media_a", life="crashed", crash=incident))
    assert store.open_incidents() == 1
    store.keep_partitions({0})  # partition 1 went to another worker
    assert store.open_incidents() == 0


class _Recovery:
    """What ``recovering_for`` reads of Faust's table recovery."""

    def __init__(self, in_recovery: bool, started_at: float | None) -> None:
        self.in_recovery = in_recovery
        self._recovery_started_at = started_at


def test_table_recovery_seconds_count_from_the_start_of_the_running_recovery() -> None:
    assert detector_metrics.recovering_for(_Recovery(True, 100.0), now=130.5) == 30.5
    assert detector_metrics.recovering_for(_Recovery(False, 100.0), now=130.5) == 0.0
    assert detector_metrics.recovering_for(_Recovery(True, None), now=130.5) == 0.0
    assert detector_metrics.recovering_for(None, now=130.5) == 0.0  # before Faust made it


def test_the_detector_serves_its_own_table_recovery_time() -> None:
    from services.config import DetectorSettings
    from services.detector.app import build_detector

    app = build_detector(DetectorSettings()).app
    assert sample("mediacdr_detector_table_recovery_seconds") == 0.0  # Faust made no recovery yet
    app.tables._recovery = _Recovery(True, time.monotonic() - 30)  # type: ignore[assignment]
    assert sample("mediacdr_detector_table_recovery_seconds") >= 30
