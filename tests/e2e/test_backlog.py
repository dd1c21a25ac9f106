"""A second detector worker that joins while the first reads a backlog: every session record
is copied to the CDR (D7).

Faust 0.15 skips the records it fetched under the previous consumer generation, acknowledges
them and commits past them. Before the detector kept its own read positions, workers sharing a
backlog lost whole sessions from the CDR (docs/DETECTOR.md, "Read positions"). With the
position checks switched off this test failed in 1 of 4 runs (records never copied); with them
the workers' logs show skipped records read again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cluster import ClusterScript
from tests.support.kafka import TailedRecord, body, headers_of, produce_many
from tests.support.services import new_deployment, running_service

pytestmark = pytest.mark.rebalance

NODES = 10
SESSIONS = 3000
PEOPLE = 3


def _backlog(t0: int) -> ClusterScript:
    """Sessions over ten nodes, each with people who join and leave; every session ends."""
    script = ClusterScript()
    for n in range(NODES):
        script.liveness("nodeConnected", f"media_k{n}", t0 + n)
    t = t0 + 100
    for s in range(SESSIONS):
        sid = f"ses_k{s:05d}"
        people = [f"con_k{s:05d}_{p}" for p in range(PEOPLE)]
        script.create(sid, f"media_k{s % NODES}", t)
        for p, cid in enumerate(people):
            script.join(sid, cid, t + 1 + p)
        for p, cid in enumerate(people):
            script.leave(sid, cid, t + 10 + p, joined=t + 1 + p)
        script.destroy(sid, t + 20, created=t)
        t += 1
    return script


def _first_of_each_id() -> Callable[[TailedRecord], bool]:
    seen: set[str] = set()

    def first(record: TailedRecord) -> bool:
        ce_id = headers_of(record)["ce_id"]
        new = ce_id not in seen
        seen.add(ce_id)
        return new

    return first


def test_a_worker_joining_during_a_backlog_loses_no_session_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    t0 = int(time.time() * 1000) - 3_600_000
    script = _backlog(t0)
    topics = {"liveness": d.topic("liveness"), "sessions": d.topic("sessions")}
    records = [(topic, key, value, [], None) for topic, key, value in script.encoded(topics)]
    asyncio.run(produce_many(d.bootstrap, records))
    copies = sum(1 for role, _key, _payload in script.records if role == "sessions")
    with running_service(d, "detector", log_name="worker-1"):
        d.wait("cdr", copies // 10, timeout=120)  # the first worker is under way
        second = str(d.workdir / "worker-2")
        with running_service(d, "detector", log_name="worker-2", MEDIACDR_DETECTOR_DATA_DIR=second):
            cdr = d.wait("cdr", copies, _first_of_each_id(), timeout=300)
    assert d.everything("deadletter") == []
    destroyed = {body(r)["sessionId"] for r in cdr if body(r)["event"] == "sessionDestroyed"}
    assert len(destroyed) == SESSIONS
