"""The crash detector on a real broker (CONTRACT §5–§9), driven from outside.

Timestamps are taken from the wall clock, so deadlines fall due while the detector runs and the
event-time rules are exercised the way production exercises them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.detector.routing import key_partition, node_partition
from tests.support.cluster import ClusterScript
from tests.support.kafka import body, event_is, headers_of, produce
from tests.support.services import Deployment, kill_9, new_deployment, running_service

GRACE = 3000
ROLES = ("liveness", "sessions", "cdr", "nodes", "notifications", "deadletter")


def _send(d: Deployment, script: ClusterScript) -> None:
    topics = {"liveness": d.topic("liveness"), "sessions": d.topic("sessions")}
    asyncio.run(produce(d.bootstrap, script.encoded(topics)))


def _crash_of(node: str, disconnected_at: int | None = None):  # type: ignore[no-untyped-def]
    def check(record) -> bool:  # type: ignore[no-untyped-def]
        b = body(record)
        return (
            b.get("event") == "nodeCrashed"
            and b["id"] == node
            and (disconnected_at is None or b["timeOfDisconnection"] == disconnected_at)
        )

    return check


def _two_sessions(node: str, t: int, tag: str) -> ClusterScript:
    """Session A: two participants publishing and subscribing to each other, an INDIVIDUAL
    recording and a broadcast; session B: three participants."""
    a, b = f"ses_A{tag}", f"ses_B{tag}"
    s = ClusterScript().liveness("nodeConnected", node, t - 2000, ip="10.0.0.7", clusterId="C1")
    s.create(a, node, t - 1900).join(a, "con_A1", t - 1800).join(a, "con_A2", t - 1700)
    s.publish(a, "con_A1", t - 1600).publish(a, "con_A2", t - 1500)
    s.subscribe(a, "con_A2", "con_A1", t - 1400).subscribe(a, "con_A1", "con_A2", t - 1300)
    s.record(a, t - 1200).broadcast(a, t - 1100)
    s.create(b, node, t - 1000).join(b, "con_B1", t - 900).join(b, "con_B2", t - 800)
    s.join(b, "con_B3", t - 700)
    return s


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One detector for the scenarios that only need it running."""
    d = new_deployment(kafka_bootstrap, tmp_path_factory.mktemp("live"))
    with running_service(d, "detector"):
        yield d


def test_reconnection_inside_grace_is_a_blip(live: Deployment) -> None:
    node, t = "media_blip", int(time.time() * 1000) + 500
    script = _two_sessions(node, t, "blip").liveness("nodeDisconnected", node, t)
    script.liveness("nodeConnected", node, t + GRACE - 200)
    # a witness: the same node crashes later, so its partition has passed the first deadline
    script.liveness("nodeDisconnected", node, t + GRACE + 1000)
    _send(live, script)
    witness = live.wait(
        "nodes",
        1,
        lambda r: body(r).get("outcome") == "crashed" and body(r)["id"] == node,
        timeout=90,
    )
    assert body(witness[0])["incidentId"] == f"{node}_{t + GRACE + 1000}"
    facts = [body(r) for r in live.everything("nodes") if body(r)["id"] == node]
    closed = [f for f in facts if f["event"] == "incidentClosed"]
    assert [(f["incidentId"], f["outcome"]) for f in closed] == [
        (f"{node}_{t}", "reconnected"),
        (f"{node}_{t + GRACE + 1000}", "crashed"),
    ]
    live.wait("cdr", 1, _crash_of(node))
    crashes = [r for r in live.everything("cdr") if _crash_of(node)(r)]
    assert len(crashes) == 1


def test_crash_after_grace_writes_the_full_cascade(live: Deployment) -> None:
    node, t = "media_crash", int(time.time() * 1000) + 500
    script = _two_sessions(node, t, "crash").liveness("nodeDisconnected", node, t)
    script.liveness("nodeConnected", node, t + GRACE + 200)
    _send(live, script)
    live.wait("cdr", 1, lambda r: body(r).get("event") == "nodeRecovered" and body(r)["id"] == node)
    live.wait(
        "cdr", 2, lambda r: body(r).get("event") == "sessionDestroyed" and r.key.endswith(b"crash")
    )
    live.wait("notifications", 5, lambda r: body(r)["sessionId"].endswith("crash"), timeout=30)
    records = [r for r in live.everything("cdr") if headers_of(r).get("ce_medianodeid") == node]
    deadline = t + GRACE
    crash_index = next(i for i, r in enumerate(records) if _crash_of(node)(r))
    crash = body(records[crash_index])
    assert crash["timestamp"] == deadline
    assert crash["timeOfDisconnection"] == t
    assert crash["sessionIds"] == ["ses_Acrash", "ses_Bcrash"]
    assert crash["recordingIds"] == ["ses_Acrash"]
    assert crash["broadcasts"] == ["ses_Acrash"]
    assert (crash["ip"], crash["clusterId"], crash["environmentId"]) == ("10.0.0.7", "C1", None)
    incident = f"{node}_{t}"
    cascade = [r for r in records if headers_of(r).get("ce_incidentid") == incident]
    by_session: dict[str, list[tuple[str, ...]]] = {}
    for r in cascade:
        b = body(r)
        if b["event"] == "nodeRecovered":  # it carries the incident it ends, stamped later
            continue
        assert b["timestamp"] == deadline
        if b["event"] == "nodeCrashed":
            continue
        assert b["reason"] == "nodeCrashed"
        assert r.key == b["sessionId"].encode()
        by_session.setdefault(b["sessionId"], []).append(
            tuple(str(b.get(k)) for k in ("event", "connectionId", "connection", "receivingFrom"))
        )
    assert by_session["ses_Acrash"] == [
        ("webrtcConnectionDestroyed", "con_A2", "INBOUND", "con_A1"),
        ("webrtcConnectionDestroyed", "con_A1", "INBOUND", "con_A2"),
        ("webrtcConnectionDestroyed", "con_A1", "OUTBOUND", "None"),
        ("participantLeft", "con_A1", "None", "None"),
        ("webrtcConnectionDestroyed", "con_A2", "OUTBOUND", "None"),
        ("participantLeft", "con_A2", "None", "None"),
        ("recordingStatusChanged", "None", "None", "None"),
        ("broadcastStopped", "None", "None", "None"),
        ("sessionDestroyed", "None", "None", "None"),
    ]
    assert by_session["ses_Bcrash"] == [
        ("participantLeft", "con_B1", "None", "None"),
        ("participantLeft", "con_B2", "None", "None"),
        ("participantLeft", "con_B3", "None", "None"),
        ("sessionDestroyed", "None", "None", "None"),
    ]
    destroyed = next(
        body(r)
        for r in cascade
        if body(r)["event"] == "sessionDestroyed" and body(r)["sessionId"] == "ses_Acrash"
    )
    assert destroyed["startTime"] == t - 1900
    assert destroyed["duration"] == (deadline - (t - 1900)) // 1000
    recovered = next(body(r) for r in records if body(r)["event"] == "nodeRecovered")
    assert recovered["timestamp"] == t + GRACE + 200
    notices = [
        body(r) for r in live.everything("notifications") if body(r)["sessionId"].endswith("crash")
    ]
    assert sorted(n["connectionId"] for n in notices) == [
        "con_A1",
        "con_A2",
        "con_B1",
        "con_B2",
        "con_B3",
    ]
    assert all(n["reason"] == "nodeCrashed" and n["timestamp"] == deadline for n in notices)


def _same_partitions(node: str, session: str, partitions: int) -> tuple[str, str]:
    """A node and a session whose records take the same internal and sessions partitions as
    ``node``'s and ``session``'s: forwarded after them, applied after them."""
    ids = ((f"media_witness{i}", f"ses_witness{i}") for i in range(10_000))
    return next(
        (n, s)
        for n, s in ids
        if node_partition(n, partitions) == node_partition(node, partitions)
        and key_partition(s.encode(), partitions) == key_partition(session.encode(), partitions)
    )


def test_session_input_read_before_the_disconnection_that_holds_it_waits(
    live: Deployment,
) -> None:
    """R8 across partitions (D4): a participant joins a session, stamped after the deadline of
    a disconnection that is read only later (its liveness partition lags). In event-time order
    the join is held by the incident and dead-lettered ``staleAfterCrash``; it must not be
    copied to the CDR and then closed by the cascade."""
    node, session = "media_d4", "ses_D4"
    t = int(time.time() * 1000) + 10_000  # the disconnection, stamped ahead of the wall clock
    late = t + GRACE + 500
    witness_node, witness = _same_partitions(node, session, live.partitions)
    script = ClusterScript().liveness("nodeConnected", node, t - 5000)
    script.create(session, node, t - 4000).join(session, "con_D4early", t - 3900)
    script.join(session, "con_D4late", late).create(witness, witness_node, t - 3800)
    _send(live, script)
    # The witness is forwarded after the late join, to the same internal partition, and it has
    # no liveness to wait for: once it is on the CDR, the join was read — and only waits.
    live.wait("cdr", 1, lambda r: body(r).get("sessionId") == witness)
    copies = [body(r) for r in live.everything("cdr") if body(r).get("sessionId") == session]
    assert [b["event"] for b in copies] == ["sessionCreated", "participantJoined"]

    _send(live, ClusterScript().liveness("nodeDisconnected", node, t))
    crash = body(live.wait("cdr", 1, _crash_of(node, t), timeout=60)[0])
    assert crash["sessionIds"] == [session]
    dead = live.wait("deadletter", 1, lambda r: b"con_D4late" in r.value, timeout=30)
    assert headers_of(dead[0])["error"] == "staleAfterCrash"
    live.wait("cdr", 1, lambda r: body(r).get("event") == "sessionDestroyed" and r.key == b"ses_D4")
    left = [
        body(r)["participantId"]
        for r in live.everything("cdr")
        if body(r).get("event") == "participantLeft" and body(r)["sessionId"] == session
    ]
    assert left == ["con_D4early"]
    assert not [
        b
        for r in live.everything("cdr")
        if (b := body(r)).get("event") == "participantJoined" and "con_D4late" in r.value.decode()
    ]


def test_removal_after_reconnection_timeout_and_no_recovery(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    node, t = "media_removed", int(time.time() * 1000) + 500
    script = ClusterScript().liveness("nodeConnected", node, t - 1000)
    script.create("ses_R", node, t - 900).liveness("nodeDisconnected", node, t)
    script.liveness("nodeConnected", node, t + GRACE + 500)
    # a witness: the new life's disconnection opens an incident, so the reconnection was applied
    script.liveness("nodeDisconnected", node, t + GRACE + 600)
    with running_service(d, "detector", MEDIACDR_RECONNECTION_TIMEOUT_S="3"):
        _send(d, script)
        opened = d.wait("nodes", 2, event_is("incidentOpened"), timeout=90)
        facts = [r for r in d.everything("nodes") if body(r)["event"] == "nodeRemoved"]
    assert [body(r)["timeOfDisconnection"] for r in opened] == [t, t + GRACE + 600]
    assert body(facts[0])["timestamp"] == t + GRACE
    cdr = [body(r) for r in d.everything("cdr")]
    events = [b["event"] for b in cdr]
    # the witness's own incident may be decided too by now (its deadline is ~7 s after t):
    # only the first life is judged here
    crashed = [b["timeOfDisconnection"] for b in cdr if b["event"] == "nodeCrashed"]
    assert crashed.count(t) == 1 and set(crashed) <= {t, t + GRACE + 600}
    assert "nodeRecovered" not in events
    statuses = [
        (b["oldStatus"], b["newStatus"])
        for b in cdr
        if b["event"] == "mediaNodeStatusChanged" and b["timestamp"] < t + GRACE + 600
    ]
    assert statuses == [("running", "terminating"), ("terminating", "terminated")]
    assert all("reason" not in b for b in cdr if b["event"] == "mediaNodeStatusChanged")


def test_kill_9_between_disconnection_and_deadline(kafka_bootstrap: str, tmp_path: Path) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    node, t = "media_kill", int(time.time() * 1000) + 2000
    script = _two_sessions(node, t, "kill").liveness("nodeDisconnected", node, t)
    with running_service(d, "detector", log_name="detector-1") as first:
        _send(d, script)
        d.wait("nodes", 1, event_is("incidentOpened"), timeout=90)
        assert not [r for r in d.everything("cdr") if _crash_of(node)(r)], (
            "decided before the deadline"
        )
        kill_9(first)
    with running_service(d, "detector", log_name="detector-2"):
        d.wait("cdr", 2, event_is("sessionDestroyed"))
    cdr = [body(r) for r in d.everything("cdr")]
    assert [b["event"] for b in cdr].count("nodeCrashed") == 1
    left = [b["connectionId"] for b in cdr if b["event"] == "participantLeft"]
    assert sorted(set(left)) == sorted(left) == ["con_A1", "con_A2", "con_B1", "con_B2", "con_B3"]


def test_restart_after_downtime_decides_from_the_log(kafka_bootstrap: str, tmp_path: Path) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    t = int(time.time() * 1000) - 20_000
    script = ClusterScript()
    script.liveness("nodeConnected", "media_A", t - 1000).liveness(
        "nodeConnected", "media_B", t - 1000
    )
    script.create("ses_onA", "media_A", t - 500).create("ses_onB", "media_B", t - 500)
    script.liveness("nodeDisconnected", "media_A", t).liveness("nodeDisconnected", "media_B", t)
    script.liveness("nodeConnected", "media_A", t + 1000)
    _send(d, script)  # no detector is running
    with running_service(d, "detector"):
        d.wait("cdr", 1, _crash_of("media_B"))
        d.wait("nodes", 1, lambda r: body(r).get("outcome") == "reconnected", timeout=60)
    cdr = [body(r) for r in d.everything("cdr")]
    assert [b["id"] for b in cdr if b["event"] == "nodeCrashed"] == ["media_B"]
    assert [b["sessionId"] for b in cdr if b["event"] == "sessionDestroyed"] == ["ses_onB"]


@pytest.mark.rebalance
def test_two_workers_and_a_rebalance_decide_each_crash_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    t = int(time.time() * 1000) + 12_000
    nodes = [f"media_w{i}" for i in range(6)]
    script = ClusterScript()
    for i, node in enumerate(nodes):
        script.liveness("nodeConnected", node, t - 5000)
        script.create(f"ses_w{i}", node, t - 4000).join(f"ses_w{i}", f"con_w{i}", t - 3000)
        script.liveness("nodeDisconnected", node, t)
    with running_service(d, "detector", log_name="worker-1"):
        _send(d, script)
        d.wait("nodes", len(nodes), event_is("incidentOpened"), timeout=90)
        second_dir = str(d.workdir / "worker-2")
        with running_service(
            d, "detector", log_name="worker-2", MEDIACDR_DETECTOR_DATA_DIR=second_dir
        ):
            crashes = d.wait("cdr", len(nodes), event_is("nodeCrashed"), timeout=120)
            d.wait("cdr", len(nodes), event_is("sessionDestroyed"), timeout=60)
    cdr = d.everything("cdr")
    decided = {
        headers_of(r)["ce_id"]: body(r)["id"] for r in cdr if body(r)["event"] == "nodeCrashed"
    }
    assert sorted(decided.values()) == nodes
    assert {body(r)["id"] for r in crashes} == set(nodes)
    destroyed = {
        headers_of(r)["ce_id"]: body(r)["sessionId"]
        for r in cdr
        if body(r)["event"] == "sessionDestroyed"
    }
    assert sorted(destroyed.values()) == sorted(f"ses_w{i}" for i in range(6))
