"""The mass-disconnection alert on a real broker: a massDisconnect fact, the metric and the log
line when more than MEDIACDR_MASS_DISCONNECT_SHARE of the running nodes disconnect within one
grace window; nothing when fewer do; crash decisions as before either way.

Ten nodes run on three partitions, so the running count and the disconnections are gathered
from several partitions into the single-partition view; the second test splits them between two
workers.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import ClusterScript
from tests.support.endpoints import free_port
from tests.support.kafka import body, event_is, headers_of, produce
from tests.support.services import Deployment, new_deployment, running_service

GRACE = 3000
NODES = [f"media_mass{i}" for i in range(10)]


def metric(url: str, name: str) -> float | None:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.search(rf"^{name} (\S+)$", text, flags=re.MULTILINE)
    return float(found[1]) if found else None


def wait_for_metric(
    url: str, name: str, expected: float, detector: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll ``/metrics`` (an HTTP endpoint: there is no event to await) until ``name`` is
    ``expected``."""
    deadline = time.monotonic() + 90
    seen: float | None = None
    while time.monotonic() < deadline:
        assert detector.poll() is None, log.read_text(errors="replace")
        try:
            seen = metric(url, name)
        except httpx.TransportError:  # not listening yet
            seen = None
        if seen == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} = {seen}, not {expected}\n{log.read_text(errors='replace')}")


def _shares(urls: list[str]) -> tuple[float, ...] | None:
    """Each worker's ``mediacdr_running_nodes``, once every worker reports some (it owns
    partitions with nodes on them)."""
    try:
        found = tuple(metric(url, "mediacdr_running_nodes") or 0 for url in urls)
    except httpx.TransportError:
        return None
    return found if all(found) else None


def wait_until(
    condition: Callable[[], bool], processes: list[subprocess.Popen[bytes]], logs: list[Path]
) -> None:
    """Poll HTTP endpoints (nothing to await) until ``condition`` holds."""
    deadline = time.monotonic() + 120
    while not condition():
        for process, log in zip(processes, logs, strict=True):
            assert process.poll() is None, log.read_text(errors="replace")
        if time.monotonic() > deadline:
            raise AssertionError("\n".join(log.read_text(errors="replace")[-3000:] for log in logs))
        time.sleep(0.2)


def send(d: Deployment, script: ClusterScript) -> None:
    topics = {"liveness": d.topic("liveness"), "sessions": d.topic("sessions")}
    asyncio.run(produce(d.bootstrap, script.encoded(topics)))


def bursts(t_a: int, t_b: int, gone: list[str]) -> ClusterScript:
    script = ClusterScript()
    for i, node in enumerate(NODES[:5]):
        script.liveness("nodeDisconnected", node, t_a + 100 * i)
        script.liveness("nodeConnected", node, t_a + 100 * i + 1000)
    for i, node in enumerate(gone):
        script.liveness("nodeDisconnected", node, t_b + 100 * i)
    return script


def test_more_than_the_share_disconnecting_at_once_is_reported_fewer_is_not(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "detector.log"
    start = int(time.time() * 1000)
    running = ClusterScript()
    for i, node in enumerate(NODES):
        running.liveness("nodeConnected", node, start, ip=f"10.0.1.{i}", clusterId="mass")
    with running_service(d, "detector", MEDIACDR_METRICS_ADDR=f"127.0.0.1:{port}") as detector:
        send(d, running)
        wait_for_metric(url, "mediacdr_running_nodes", 10, detector, log)
        # A: five of ten blip (half is not more than half); B, two grace windows later: six of
        # ten disconnect for good (more than half) and crash. Stamped ahead of the wall clock,
        # so nothing arrives later than the allowed lateness (CONTRACT R8).
        t_a = int(time.time() * 1000) + 2000
        t_b = t_a + 3 * GRACE
        gone = NODES[4:]
        send(d, bursts(t_a, t_b, gone))
        (fact,) = d.wait("nodes", 1, event_is("massDisconnect"))
        blips = d.wait("nodes", 5, lambda r: body(r).get("outcome") == "reconnected")
        crashes = d.wait("cdr", len(gone), event_is("nodeCrashed"))
        # every disconnection was judged before the first crash (a grace window later): one fact
        wait_for_metric(url, "mediacdr_mass_disconnects_total", 1, detector, log)
        assert metric(url, "mediacdr_mass_disconnects_total") == 1
    mass = body(fact)
    assert mass == {
        "event": "massDisconnect",
        "timestamp": t_b + 100 * (len(gone) - 1),
        "windowStart": t_b,
        "windowMs": GRACE,
        "nodeIds": gone,
        "runningNodes": 10,
        "threshold": 0.5,
    }
    assert fact.key == b"*"
    assert headers_of(fact)["ce_type"] == "massDisconnect"
    assert sorted(body(r)["id"] for r in blips) == NODES[:5]
    assert sorted(body(r)["id"] for r in crashes) == gone
    assert {body(r)["timeOfDisconnection"] for r in crashes} == {
        t_b + 100 * i for i in range(len(gone))
    }
    assert "mass disconnection: 6 of 10 running media nodes" in log.read_text()


@pytest.mark.rebalance
def test_two_workers_judge_the_cluster_as_a_whole(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Each worker owns some nodes; the fact counts the running nodes of both."""
    d = new_deployment(kafka_bootstrap, tmp_path, partitions=2)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    start = int(time.time() * 1000)
    running = ClusterScript()
    for node in NODES:
        running.liveness("nodeConnected", node, start)
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                running_service(
                    d, "detector", log_name=f"detector-{i}", MEDIACDR_METRICS_ADDR=f"127.0.0.1:{p}"
                )
            )
            for i, p in enumerate(ports)
        ]
        send(d, running)
        logs = [tmp_path / f"detector-{i}.log" for i in range(2)]
        wait_until(lambda: sum(_shares(urls) or ()) == len(NODES), workers, logs)
        gone = NODES[4:]
        t = int(time.time() * 1000) + 2000  # ahead of the clock: nothing arrives late
        lost = ClusterScript()
        for i, node in enumerate(gone):
            lost.liveness("nodeDisconnected", node, t + 100 * i)
        send(d, lost)
        (fact,) = d.wait("nodes", 1, event_is("massDisconnect"))
        d.wait("cdr", len(gone), event_is("nodeCrashed"))
        counted = [metric(url, "mediacdr_mass_disconnects_total") or 0 for url in urls]
    assert (body(fact)["nodeIds"], body(fact)["runningNodes"]) == (gone, 10)
    assert sorted(counted) == [0, 1]  # one worker holds the cluster-wide view
