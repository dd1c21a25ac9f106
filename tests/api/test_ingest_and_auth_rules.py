"""Ingest checks and API authentication as pure functions."""

from __future__ import annotations

import base64
import json
import time

import pytest

from services.api.auth import authorized, is_loopback, split_addr
from services.api.ingest import Accepted, Counted, Refused, check_liveness, check_openvidu

NOW = int(time.time() * 1000)
DAY_S = 86_400
DAY_MS = DAY_S * 1000


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auth() -> None:
    assert authorized(None, None)
    assert authorized("s3cret", "Bearer s3cret")
    assert authorized("s3cret", basic("mediacdr", "s3cret"))
    assert not authorized("s3cret", None)
    assert not authorized("s3cret", "Bearer wrong")
    assert not authorized("s3cret", basic("admin", "s3cret"))
    assert not authorized("s3cret", "Basic !!notbase64")
    assert not authorized("s3cret", "Digest s3cret")


def test_addresses() -> None:
    assert split_addr("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert split_addr("[::1]:9") == ("::1", 9)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert (
        not is_loopback("0.0.0.0")
        and not is_loopback("10.1.2.3")
        and not is_loopback("example.com")
    )
    with pytest.raises(ValueError):
        split_addr("8080")


def test_a_session_event_gets_its_node_from_the_query_or_the_default() -> None:
    created = body(event="sessionCreated", timestamp=NOW, sessionId="ses_A")
    checked = check_openvidu(created, "media_i-1", DAY_S, NOW)
    assert isinstance(checked, Accepted) and checked.role == "sessions"
    assert checked.key == b"ses_A"
    assert json.loads(checked.value)["mediaNodeId"] == "media_i-1"
    refused = check_openvidu(created, None, DAY_S, NOW)
    assert isinstance(refused, Refused) and "mediaNodeId" in refused.detail


def test_what_is_counted_refused_or_sent_to_liveness() -> None:
    crashed = body(event="nodeCrashed", timestamp=NOW, id="media_i-1")
    assert check_openvidu(crashed, None, DAY_S, NOW) == Counted("nodeCrashed")
    status = body(
        event="mediaNodeStatusChanged",
        timestamp=NOW,
        id="media_i-1",
        environmentId="i-1",
        ip="10.0.0.1",
        uri="ws://10.0.0.1:8888/kurento",
        clusterId="C1",
        newStatus="running",
        oldStatus="launching",
    )
    checked = check_openvidu(status, None, DAY_S, NOW)
    assert isinstance(checked, Accepted) and checked.role == "liveness"
    for raw, code in [
        (b"{not json", "invalidJson"),
        (body(event="nope", timestamp=NOW, sessionId="s"), "unknownEvent"),
        (body(event="sessionCreated", timestamp="x", sessionId="s"), "schemaViolation"),
        (
            body(event="sessionCreated", timestamp=NOW - 2 * DAY_S * 1000, sessionId="s"),
            "timestampOutOfRange",
        ),
    ]:
        refused = check_openvidu(raw, "n", DAY_S, NOW)
        assert isinstance(refused, Refused) and refused.code == code, raw


def test_liveness() -> None:
    ok = check_liveness(body(event="nodeHeartbeat", timestamp=NOW, id="media_i-1"), DAY_S, NOW)
    assert isinstance(ok, Accepted) and ok.key == b"media_i-1"
    session = check_liveness(body(event="sessionCreated", timestamp=NOW, sessionId="s"), DAY_S, NOW)
    assert isinstance(session, Refused) and session.code == "unknownEvent"
