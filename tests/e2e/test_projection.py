"""The projector on a real broker and a real PostgreSQL (CONTRACT §10, §12).

The detector and the projector run as processes; the test waits for the projection by reading
the consumed positions the projector commits with its rows (SQL has no change notification to
await, so this polls the database, never the clock).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from services.config import DetectorSettings
from services.core.rules import Emit
from services.detector.output import OutputBuilder
from services.ops.export import export_cdr
from services.ops.sql import wait_caught_up
from services.projector.rebuild import NotEmpty, rebuild
from services.store import make_engine, models
from services.store.projection import ProjectionStore
from tests.support.cdr_story import busy_cluster
from tests.support.cluster import ClusterScript
from tests.support.databases import fresh_database_url, migrated_engine, snapshot
from tests.support.endpoints import free_port, value
from tests.support.kafka import (
    body,
    group_members,
    produce,
    produce_many,
    wait_for_stable_group,
)
from tests.support.services import Deployment, cli, new_deployment, running_service

GRACE = 3000


def wait_projected(engine: Engine, d: Deployment, timeout: float = 90) -> None:
    """Until the projector has applied everything now on the topics."""
    settings = d.projector_settings("sqlite://")
    asyncio.run(wait_caught_up(settings, ProjectionStore(engine), timeout))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)  # polling the database, as above


def test_two_projectors_in_one_group_write_the_rows_a_rebuild_writes(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    """Scale-out: two projector processes in one consumer group share the CDR and node-facts
    partitions and one PostgreSQL database; rows that several partitions write (a node, an
    incident and its cascade counts) must come out as one process would write them."""
    d = new_deployment(kafka_bootstrap, tmp_path)
    url = fresh_database_url("postgresql", tmp_path, postgres_url)
    engine = migrated_engine(url)
    builder = OutputBuilder(DetectorSettings(**d.kafka_settings().model_dump()))
    story = busy_cluster(120, participants=3, t0=int(time.time() * 1000) - 600_000)
    outputs = [
        builder.emit(e) for e in story if isinstance(e, Emit) and e.stream != "notifications"
    ]
    records = [(o.topic, o.key, o.value, list(o.headers), o.timestamp_ms) for o in outputs]
    ports = [free_port(), free_port()]
    with (
        running_service(
            d,
            "projector",
            log_name="projector-1",
            MEDIACDR_DATABASE_URL=url,
            MEDIACDR_METRICS_ADDR=f"127.0.0.1:{ports[0]}",
        ),
        running_service(
            d,
            "projector",
            log_name="projector-2",
            MEDIACDR_DATABASE_URL=url,
            MEDIACDR_METRICS_ADDR=f"127.0.0.1:{ports[1]}",
        ),
    ):
        group = d.env()["MEDIACDR_PROJECTOR_GROUP_ID"]
        wait_for_stable_group(d.bootstrap, group, 2)
        asyncio.run(produce_many(d.bootstrap, records))
        wait_projected(engine, d)
        assert asyncio.run(group_members(d.bootstrap, group)) == ("Stable", 2)

        def read() -> list[float]:
            """Per process, the records it counted (just after their transaction)."""
            texts = [httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=5).text for p in ports]
            return [value(t, "mediacdr_projector_records_total") or 0 for t in texts]

        deadline = time.monotonic() + 30
        while sum(applied := read()) < len(records):
            assert time.monotonic() < deadline, f"counted {applied} of {len(records)}"
            time.sleep(0.1)  # polling the endpoints: there is nothing to await
    assert all(n > 0 for n in applied), f"one projector read nothing: {applied}"
    assert sum(applied) == len(records)
    with engine.connect() as conn:
        crash = conn.execute(
            select(models.node_incidents).where(models.node_incidents.c.outcome == "crashed")
        ).one()
        assert crash.sessions_closed == 40  # every third session was open on the crashed node
    rebuilt_url = fresh_database_url("postgresql", tmp_path, postgres_url)
    rebuilt = migrated_engine(rebuilt_url)
    asyncio.run(rebuild(d.projector_settings(rebuilt_url)))
    assert snapshot(rebuilt) == snapshot(engine)
    rebuilt.dispose()
    engine.dispose()


def test_detector_and_projector_turn_a_cluster_story_into_sql(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    url = fresh_database_url("postgresql", tmp_path, postgres_url)
    engine = migrated_engine(url)
    a, b, t = "media_pa", "media_pb", int(time.time() * 1000) + 500
    script = ClusterScript()
    script.liveness("nodeConnected", a, t - 3000, ip="10.0.0.1", clusterId="C1")
    script.liveness("nodeConnected", b, t - 3000, ip="10.0.0.2", clusterId="C1")
    script.create("ses_S", a, t - 2900).join("ses_S", "con_1", t - 2800)
    script.join("ses_S", "con_2", t - 2700).record("ses_S", t - 2600)
    script.create("ses_Q", b, t - 2500).join("ses_Q", "con_9", t - 2400)
    script.liveness("nodeDisconnected", a, t - 2000)  # a blip
    script.liveness("nodeConnected", a, t - 1000)
    script.liveness("nodeDisconnected", a, t)  # the crash
    topics = {"liveness": d.topic("liveness"), "sessions": d.topic("sessions")}
    with (
        running_service(d, "detector"),
        running_service(d, "projector", MEDIACDR_DATABASE_URL=url),
    ):
        asyncio.run(produce(d.bootstrap, script.encoded(topics)))
        d.wait("cdr", 1, lambda r: body(r).get("event") == "sessionDestroyed", timeout=90)
        back = int(time.time() * 1000)
        again = ClusterScript().create("ses_S", b, back).join("ses_S", "con_3", back + 100)
        again.join("ses_S", "con_4", back + 200).liveness("nodeConnected", a, back + 300)
        asyncio.run(produce(d.bootstrap, again.encoded(topics)))
        d.wait("cdr", 1, lambda r: body(r).get("event") == "nodeRecovered", timeout=60)
        d.wait("cdr", 2, lambda r: body(r).get("connectionId") in ("con_3", "con_4"))
        wait_projected(engine, d)

    incident, blip = f"{a}_{t}", f"{a}_{t - 2000}"
    with engine.connect() as conn:
        incidents = {r.incident_id: r for r in conn.execute(select(models.node_incidents))}
        assert incidents[blip].outcome == "reconnected"
        crash = incidents[incident]
        assert (crash.outcome, crash.sessions_closed, crash.participants_evicted) == (
            "crashed",
            1,
            2,
        )
        assert crash.recordings_stopped == 1
        assert crash.recovered_at is not None
        assert int(crash.crashed_at.timestamp() * 1000) == t + GRACE
        assert crash.decided_at >= crash.deadline_at  # the ce_decidedat header, projected
        sessions = {r.unique_session_id: r for r in conn.execute(select(models.sessions))}
        old = sessions[f"ses_S_{t - 2900}"]
        assert (old.reason, old.media_node_id, old.incident_id) == ("nodeCrashed", a, incident)
        assert int(old.media_lost_at.timestamp() * 1000) == t
        assert sessions[f"ses_S_{back}"].media_node_id == b
        assert sessions[f"ses_Q_{t - 2500}"].destroyed_at is None
        (recovery,) = conn.execute(select(models.session_recoveries)).all()
        assert recovery.new_unique_session_id == f"ses_S_{back}"
        assert (recovery.from_node, recovery.to_node) == (a, b)
        assert recovery.time_to_recover_ms == back - (t + GRACE)
        assert (recovery.participants_before, recovery.participants_returned) == (2, 2)
        node_a = conn.execute(select(models.media_nodes).where(models.media_nodes.c.id == a)).one()
        assert (node_a.status, node_a.connected, node_a.ip) == ("running", True, "10.0.0.1")

    # The same topics replayed into an empty database give the same rows, on both backends.
    for backend in ("postgresql", "sqlite"):
        rebuilt_url = fresh_database_url(backend, tmp_path, postgres_url)
        rebuilt = migrated_engine(rebuilt_url)
        report = asyncio.run(rebuild(d.projector_settings(rebuilt_url)))
        assert report.totals.read == report.total > 0
        assert snapshot(rebuilt) == snapshot(engine), backend
        with pytest.raises(NotEmpty):
            asyncio.run(rebuild(d.projector_settings(rebuilt_url)))
        asyncio.run(rebuild(d.projector_settings(rebuilt_url), replace=True))
        assert snapshot(rebuilt) == snapshot(engine), backend
        rebuilt.dispose()

    # The export: OpenVidu's CDR file format, in (timestamp, partition, offset) order.
    out = io.StringIO()
    asyncio.run(export_cdr(d.bootstrap, d.topic("cdr"), out))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(len(line) == 1 and "event" not in next(iter(line.values())) for line in lines)
    stamps = [next(iter(line.values()))["timestamp"] for line in lines]
    assert stamps == sorted(stamps)
    with engine.connect() as conn:
        assert (
            len(lines) == conn.execute(select(func.count()).select_from(models.cdr_events)).scalar()
        )
    crashed = [line["nodeCrashed"] for line in lines if "nodeCrashed" in line]
    assert [c["timeOfDisconnection"] for c in crashed] == [t]
    window = io.StringIO()
    asyncio.run(export_cdr(d.bootstrap, d.topic("cdr"), window, since_ms=t + GRACE, until_ms=back))
    inside = [json.loads(line) for line in window.getvalue().splitlines()]
    assert inside and all(t + GRACE <= next(iter(x.values()))["timestamp"] < back for x in inside)
    assert len(inside) == sum(1 for s in stamps if t + GRACE <= s < back)

    # The same through the command line, as an operator runs it.
    since = datetime.fromtimestamp((t + GRACE) / 1000, UTC).isoformat()
    exported = tmp_path / "cdr.jsonl"
    done = cli(d, "cdr", "export", "-o", str(exported), "--since", since, "--until", str(back))
    assert exported.read_text() == window.getvalue()
    assert f"{len(inside)} events written" in done.stderr
    cli_db = fresh_database_url("sqlite", tmp_path)
    cli(d, "migrate", MEDIACDR_DATABASE_URL=cli_db)
    done = cli(d, "rebuild", MEDIACDR_DATABASE_URL=cli_db)
    assert f"rebuilt from {report.total} records" in done.stdout
    refused = cli(d, "rebuild", MEDIACDR_DATABASE_URL=cli_db, check=False)
    assert refused.returncode != 0 and "--replace" in refused.stderr
    with_cli = make_engine(cli_db)
    assert snapshot(with_cli) == snapshot(engine)
    with_cli.dispose()
    engine.dispose()
