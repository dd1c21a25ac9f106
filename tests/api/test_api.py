"""The HTTP API in process (FastAPI's test client) on a projected story in SQLite, with a real
broker behind the ingest endpoints."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.config import ApiSettings
from services.store.projection import ProjectionStore
from tests.support.cdr_story import INCIDENT, NODE_A, NODE_B, cdr_story
from tests.support.databases import fresh_database_url, migrated_engine
from tests.support.kafka import body
from tests.support.services import ROLES, Deployment, new_deployment

SECRET = "s3cret-for-tests"
AUTH = {"Authorization": f"Bearer {SECRET}"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return new_deployment(kafka_bootstrap, tmp_path_factory.mktemp("api"))


def settings_for(d: Deployment, url: str, **extra: Any) -> ApiSettings:
    topics = {f"topic_{role}": d.topic(role) for role in ROLES}
    values: dict[str, Any] = {
        "kafka_bootstrap": d.bootstrap,
        "database_url": url,
        "api_secret": SECRET,
        **topics,
    }
    return ApiSettings(**(values | extra))


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> Iterator[TestClient]:
    url = fresh_database_url("sqlite", deployment.workdir)
    engine = migrated_engine(url)
    records = cdr_story().records
    ProjectionStore(engine).apply(records, {(r.topic, r.partition): r.offset + 1 for r in records})
    with TestClient(create_app(settings_for(deployment, url), engine)) as test_client:
        yield test_client
    engine.dispose()


def test_api_and_dashboard_need_the_secret_health_and_metrics_do_not(client: TestClient) -> None:
    for path in ("/api/nodes", "/api/cdr", "/api/webhooks", "/"):
        assert client.get(path).status_code == 401, path
    denied = client.get("/api/nodes", headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401 and "Basic" in denied.headers["www-authenticate"]
    basic = base64.b64encode(f"mediacdr:{SECRET}".encode()).decode()
    assert client.get("/api/nodes", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/health").json() == {"status": "ok", "database": "ok"}
    assert "mediacdr_ingest_events" in client.get("/metrics").text
    page = client.get("/", headers=AUTH)
    assert page.status_code == 200 and "mediacdr" in page.text


def test_nodes_sessions_incidents(client: TestClient) -> None:
    nodes = {n["id"]: n for n in client.get("/api/nodes", headers=AUTH).json()}
    assert (nodes[NODE_A]["status"], nodes[NODE_B]["live_sessions"]) == ("running", 2)
    detail = client.get(f"/api/nodes/{NODE_A}", headers=AUTH).json()
    assert detail["incidents"][0]["incident_id"] == INCIDENT
    assert client.get("/api/nodes/nope", headers=AUTH).status_code == 404
    live = client.get("/api/sessions", params={"active": "true"}, headers=AUTH).json()
    assert {s["media_node_id"] for s in live} == {NODE_B}
    on_a = client.get("/api/sessions", params={"node": NODE_A}, headers=AUTH).json()
    assert len(on_a) == 2
    crashed = client.get("/api/incidents", params={"node": NODE_A}, headers=AUTH).json()
    assert [i["outcome"] for i in crashed] == ["crashed", "reconnected"]


def test_cdr_pages_follow_each_other_in_cdr_order(client: TestClient) -> None:
    everything = client.get("/api/cdr", params={"limit": 1000}, headers=AUTH).json()["items"]
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/cdr", params=params, headers=AUTH).json()
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == everything and len(everything) == 30
    stamps = [e["timestamp"] for e in everything]
    assert stamps == sorted(stamps)
    crash = client.get(
        "/api/cdr", params={"reason": "nodeCrashed", "session": "ses_Beta"}, headers=AUTH
    ).json()["items"]
    assert [e["event"] for e in crash] == ["participantLeft", "sessionDestroyed"]
    assert client.get("/api/cdr", params={"cursor": "garbage"}, headers=AUTH).status_code == 400


def test_webhooks_through_the_api(client: TestClient) -> None:
    added = client.post(
        "/api/webhooks",
        json={"url": "https://example.com/hook", "id": "api-test", "events": ["nodeCrashed"]},
        headers=AUTH,
    )
    assert added.status_code == 201 and added.json()["secret"].startswith("whsec_")
    listed = client.get("/api/webhooks", headers=AUTH).json()
    assert [w["id"] for w in listed] == ["api-test"] and "secret" not in listed[0]
    again = client.post(
        "/api/webhooks", json={"url": "https://example.com/hook", "id": "api-test"}, headers=AUTH
    )
    assert again.status_code == 409
    bad = client.post(
        "/api/webhooks", json={"url": "https://x.test", "events": ["nope"]}, headers=AUTH
    )
    assert bad.status_code == 400
    assert client.post("/api/webhooks", json={"url": "ftp://x"}, headers=AUTH).status_code == 422
    replayed = client.post("/api/webhooks/api-test/replay", json={}, headers=AUTH)
    assert replayed.json() == {"queued": 0}
    assert client.post("/api/webhooks/none/replay", json={}, headers=AUTH).status_code == 404
    assert client.delete("/api/webhooks/api-test", headers=AUTH).status_code == 204
    assert client.delete("/api/webhooks/api-test", headers=AUTH).status_code == 404


def test_dashboard_state(client: TestClient) -> None:
    state = client.get("/api/dashboard", headers=AUTH).json()
    assert {n["id"]: n["state"] for n in state["nodes"]} == {NODE_A: "running", NODE_B: "running"}
    assert state["incidents"][0]["incident_id"] == INCIDENT
    assert any(r["new_unique_session_id"] for r in state["recoveries"])


def test_openvidu_reference_bodies_are_ingested(client: TestClient, deployment: Deployment) -> None:
    """Every CDR example of schemas/cdr (OpenVidu's reference bodies), stamped now (the ingest
    refuses bodies more than a day off the server clock)."""
    now = int(time.time() * 1000)
    answers = {}
    for path in sorted((ROOT / "schemas" / "cdr").glob("*.example.json")):
        example = json.loads(path.read_text()) | {"timestamp": now}
        answer = client.post(
            "/api/ingest/openvidu",
            params={"mediaNodeId": "media_i-ingest"},
            content=json.dumps(example),
            headers=AUTH,
        )
        answers[example["event"]] = (answer.status_code, answer.json().get("published"))
    assert answers.pop("nodeCrashed") == (200, False)
    assert answers.pop("nodeRecovered") == (200, False)
    assert set(answers.values()) == {(200, True)}, answers
    sessions = deployment.wait("sessions", len(answers) - 1)
    assert all(body(r)["mediaNodeId"] == "media_i-ingest" for r in sessions)
    assert {body(r)["event"] for r in sessions} == set(answers) - {"mediaNodeStatusChanged"}
    (status,) = deployment.wait("liveness", 1)
    assert body(status)["event"] == "mediaNodeStatusChanged"


def test_invalid_bodies_are_refused_and_nothing_is_published(
    client: TestClient, deployment: Deployment
) -> None:
    before = len(deployment.everything("liveness"))
    refused = client.post("/api/ingest/liveness", content=b"{oops", headers=AUTH)
    assert refused.status_code == 400 and refused.json()["error"] == "invalidJson"
    stale = {"event": "nodeHeartbeat", "timestamp": 1_000_000_000_000, "id": "media_i-1"}
    old = client.post("/api/ingest/liveness", json=stale, headers=AUTH)
    assert old.status_code == 400 and old.json()["error"] == "timestampOutOfRange"
    fine = {"event": "nodeHeartbeat", "timestamp": int(time.time() * 1000), "id": "media_i-1"}
    assert client.post("/api/ingest/liveness", json=fine, headers=AUTH).status_code == 200
    after = deployment.everything("liveness")
    assert len(after) == before + 1 and body(after[-1])["timestamp"] == fine["timestamp"]


def test_kafka_down_is_503(deployment: Deployment, tmp_path: Path) -> None:
    url = fresh_database_url("sqlite", tmp_path)
    engine = migrated_engine(url)
    settings = settings_for(deployment, url, kafka_bootstrap="127.0.0.1:1")
    fine = {"event": "nodeHeartbeat", "timestamp": int(time.time() * 1000), "id": "media_i-1"}
    with TestClient(create_app(settings, engine)) as client:
        answer = client.post("/api/ingest/liveness", json=fine, headers=AUTH)
    assert answer.status_code == 503 and answer.json()["error"] == "kafkaUnavailable"
    engine.dispose()


def test_a_public_address_without_a_secret_is_refused(tmp_path: Path) -> None:
    env = {"MEDIACDR_API_ADDR": "0.0.0.0:0", "MEDIACDR_DATABASE_URL": "sqlite:///x.db"}
    done = subprocess.run(
        [sys.executable, "-m", "services", "api"],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode != 0
    assert "MEDIACDR_API_SECRET" in done.stderr and "0.0.0.0" in done.stderr
