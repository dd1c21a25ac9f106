"""The foundation slice, driven from outside: a real broker, the detector as a process.

Valid session events are copied to the CDR topic with the ce_* headers and without mediaNodeId;
bad input lands on the dead-letter topic with its reason while the detector keeps running.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from services.core.codec import ce_id
from tests.support.kafka import body, event_is, headers_of, produce
from tests.support.services import Deployment, new_deployment, running_service

T0 = 1_764_000_000_000
NODE = "media_i-0abc"
SESSION = "ses_Jd8tUyvhXO"


def _json(obj: dict[str, object]) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Deployment:
    return new_deployment(kafka_bootstrap, tmp_path)


GOOD = [
    (
        "sessions",
        SESSION,
        {"event": "sessionCreated", "timestamp": T0, "sessionId": SESSION, "mediaNodeId": NODE},
    ),
    (
        "sessions",
        SESSION,
        {
            "event": "participantJoined",
            "timestamp": T0 + 10,
            "sessionId": SESSION,
            "connectionId": "con_EIeO06zgMz",
            "location": "Berlin, Germany",
            "ip": "37.122.145.190",
            "platform": "Chrome 85.0.4183.121 on Linux 64-bit",
            "clientData": "Mike",
            "serverData": "{'user': 'client1'}",
        },
    ),
    (
        "liveness",
        NODE,
        {
            "event": "mediaNodeStatusChanged",
            "timestamp": T0 + 20,
            "id": NODE,
            "environmentId": "i-0abc",
            "ip": "172.17.0.3",
            "uri": "ws://172.17.0.3:8888/kurento",
            "newStatus": "running",
            "oldStatus": "launching",
            "clusterId": "MY_CLUSTER",
        },
    ),
]

BAD: list[tuple[str, str, bytes, str]] = [
    ("sessions", "ses_x", b"{not json", "invalidJson"),
    (
        "sessions",
        SESSION,
        _json({"event": "sessionCreated", "timestamp": "soon", "sessionId": SESSION}),
        "schemaViolation",
    ),
    (
        "sessions",
        SESSION,
        _json({"event": "sessionExploded", "timestamp": T0, "sessionId": SESSION}),
        "unknownEvent",
    ),
    (
        "sessions",
        "ses_other",
        _json(
            {"event": "sessionCreated", "timestamp": T0, "sessionId": SESSION, "mediaNodeId": NODE}
        ),
        "keyMismatch",
    ),
    (
        "sessions",
        "ses_never",
        _json(
            {
                "event": "sessionDestroyed",
                "timestamp": T0,
                "sessionId": "ses_never",
                "startTime": T0,
                "duration": 0,
                "reason": "lastParticipantLeft",
            }
        ),
        "unknownSession",
    ),
    (
        "liveness",
        NODE,
        _json({"event": "nodeHeartbeat", "timestamp": 5, "id": NODE}),
        "timestampOutOfRange",
    ),
]


def test_session_events_are_copied_and_bad_input_dead_lettered(deployment: Deployment) -> None:
    d = deployment
    records = [(d.topic(t), k.encode(), v, c) for t, k, v, c in BAD]
    with running_service(d, "detector") as detector:
        asyncio.run(produce(d.bootstrap, [(t, k, v) for t, k, v, _ in records]))
        asyncio.run(produce(d.bootstrap, [(d.topic(t), k.encode(), _json(v)) for t, k, v in GOOD]))
        cdr = d.wait("cdr", 3, timeout=120)
        dead = d.wait("deadletter", len(BAD), timeout=60)
        assert detector.poll() is None, "the detector stopped on bad input"

    by_event = {body(r)["event"]: r for r in cdr}
    created = by_event["sessionCreated"]
    assert body(created) == {
        "event": "sessionCreated",
        "timestamp": T0,
        "sessionId": SESSION,
        "uniqueSessionId": f"{SESSION}_{T0}",
    }
    h = headers_of(created)
    assert h["ce_specversion"] == "1.0"
    assert h["ce_type"] == "sessionCreated"
    assert h["ce_source"] == "mediacdr/detector"
    assert h["ce_time"] == "2025-11-24T16:00:00.000Z"
    assert h["ce_dataschema"] == "urn:mediacdr:sessionCreated:1"
    assert h["content-type"] == "application/json"
    assert h["ce_medianodeid"] == NODE
    assert h["ce_id"] == ce_id("sessionCreated", body(created))
    assert uuid.UUID(h["ce_id"]).version == 5
    assert created.key == SESSION.encode()
    assert created.timestamp_ms == T0

    joined = body(by_event["participantJoined"])
    assert joined["participantId"] == "con_EIeO06zgMz"
    assert joined["uniqueSessionId"] == f"{SESSION}_{T0}"
    assert "mediaNodeId" not in joined

    status = by_event["mediaNodeStatusChanged"]
    assert body(status) == GOOD[2][2]
    assert status.key == NODE.encode()
    assert headers_of(status)["ce_medianodeid"] == NODE

    codes = sorted(headers_of(r)["error"] for r in dead)
    assert codes == sorted(c for *_, c in BAD)
    for r in dead:
        h = headers_of(r)
        original = next(x for x in records if x[3] == h["error"])
        assert (r.key, r.value) == (original[1], original[2])
        assert h["ce_type"] == "mediacdr.deadletter"
        assert h["source_topic"] == original[0]
        assert h["error_detail"]
        assert int(h["source_offset"]) >= 0
        assert ("content-type" in h) == (h["error"] != "invalidJson")


def test_detector_keeps_running_after_garbage(deployment: Deployment) -> None:
    d = deployment
    garbage = [
        (d.topic("sessions"), None, b"\xff\xfe"),
        (d.topic("liveness"), b"n", None),
        (d.topic("sessions"), b"s", b"[1,2]"),
    ]
    good = GOOD[0]
    with running_service(d, "detector") as detector:
        asyncio.run(produce(d.bootstrap, garbage))
        asyncio.run(produce(d.bootstrap, [(d.topic(good[0]), good[1].encode(), _json(good[2]))]))
        cdr = d.wait("cdr", 1, event_is("sessionCreated"), timeout=120)
        dead = d.wait("deadletter", 3, timeout=60)
        assert detector.poll() is None
    assert body(cdr[0])["sessionId"] == SESSION
    assert sorted(headers_of(r)["error"] for r in dead) == [
        "invalidJson",
        "invalidJson",
        "invalidJson",
    ]
