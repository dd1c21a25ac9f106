"""Fuzzed bodies at the HTTP ingest (issue 8), through FastAPI's test client with a real broker
behind it: never a 5xx; a refusal is a 400 with a code and a reason; what is accepted is
published (200) and is what the detector accepts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.app import create_app
from services.core.errors import DEAD_LETTER_CODES
from tests.api.test_api import AUTH, SECRET, settings_for
from tests.support.databases import fresh_database_url, migrated_engine
from tests.support.fuzz import Record, input_records
from tests.support.services import new_deployment

CODES = {*DEAD_LETTER_CODES, "missingMediaNode"}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def client(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    d = new_deployment(kafka_bootstrap, tmp_path_factory.mktemp("ingest-fuzz"))
    url = fresh_database_url("sqlite", d.workdir)
    engine = migrated_engine(url)
    # stamps of any year may be accepted, so that fuzzed bodies reach every check
    app = create_app(settings_for(d, url, ingest_max_skew_s=10**10), engine)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    engine.dispose()


@FUZZ
@given(
    input_records(max_huge=300_000),
    st.sampled_from(["/api/ingest/openvidu", "/api/ingest/liveness"]),
    st.one_of(st.none(), st.text(max_size=20)),
    st.sampled_from(["application/json", "text/plain", "application/octet-stream", ""]),
)
def test_every_body_gets_200_or_a_coded_400(
    client: TestClient, record: Record, path: str, node: str | None, content_type: str
) -> None:
    _kind, _key, value = record
    params = {"mediaNodeId": node} if node is not None else {}
    answer = client.post(
        path,
        content=value or b"",
        params=params,
        headers=AUTH | {"content-type": content_type},
    )
    assert answer.status_code in (200, 400), (answer.status_code, answer.text)
    body = answer.json()
    if answer.status_code == 200:
        assert body["event"] and isinstance(body["published"], bool)
    else:
        assert body["error"] in CODES and body["detail"], body


@FUZZ
@given(
    st.one_of(
        st.none(),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        st.sampled_from(["Bearer ", "Basic ", "Bearer wrong", "Basic bWVkaWFjZHI6", "bearer"]),
    )
)
def test_no_credentials_no_access(client: TestClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    answer = client.post("/api/ingest/liveness", content=b"{}", headers=headers)
    assert answer.status_code == 401
    assert SECRET not in answer.text
