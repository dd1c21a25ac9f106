"""Webhook signing, outcomes and the retry schedule (CONTRACT §13). Signatures are checked by
the `standardwebhooks` library, an independent implementation."""

from __future__ import annotations

import random
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.core.webhooks import (
    DEFAULT_SCHEDULE_S,
    InvalidSecret,
    decode_secret,
    new_secret,
    next_delay_s,
    outcome_of,
    wants,
    webhook_headers,
)

BODY = '{"event":"sessionCreated","timestamp":1601394690713,"sessionId":"ses_Ñ"}'.encode()


def test_signatures_verify_with_the_reference_library() -> None:
    secret = new_secret()
    stamp = int(time.time())
    headers = dict(
        webhook_headers(
            message_id="3f0c8a4e-0000-5000-8000-000000000001",
            timestamp_s=stamp,
            body=BODY,
            key=decode_secret(secret),
            custom=[("Authorization", "Basic abc")],
        )
    )
    assert headers["webhook-id"] == "3f0c8a4e-0000-5000-8000-000000000001"
    assert headers["webhook-timestamp"] == str(stamp)
    assert headers["content-type"] == "application/json"
    assert headers["Authorization"] == "Basic abc"
    Webhook(secret).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers)


def test_without_a_secret_there_is_no_signature() -> None:
    headers = dict(webhook_headers(message_id="x", timestamp_s=1, body=BODY, key=None))
    assert "webhook-signature" not in headers


@pytest.mark.parametrize("bad", ["whsec_!!!", "whsec_c2hvcnQ=", ""])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSecret):
        decode_secret(bad)


def test_outcomes() -> None:
    assert [outcome_of(c) for c in (200, 201, 204, 299)] == ["delivered"] * 4
    assert outcome_of(410) == "disable"
    assert [outcome_of(c) for c in (None, 301, 400, 404, 429, 500, 503)] == ["retry"] * 7


def test_the_default_schedule_and_giving_up() -> None:
    assert DEFAULT_SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    rng = random.Random(1)
    delays = [next_delay_s(n, DEFAULT_SCHEDULE_S, 0.0, rng) for n in range(9)]
    assert delays == [0, 5, 300, 1800, 7200, 18000, 36000, 36000, None]


def test_jitter_spreads_within_its_bounds() -> None:
    rng = random.Random(2)
    delays = {next_delay_s(1, (0, 100), 0.2, rng) for _ in range(200)}
    assert all(d is not None and 80 <= d <= 120 for d in delays)
    assert len(delays) > 100


def test_event_filter() -> None:
    assert wants(None, "nodeCrashed") and wants([], "nodeCrashed")
    assert wants(["nodeCrashed"], "nodeCrashed")
    assert not wants(["nodeCrashed"], "sessionCreated")
