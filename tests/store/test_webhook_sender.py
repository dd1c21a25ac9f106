"""One attempt end to end minus the network: the sender with httpx's in-memory transport (a
small fake receiver) and a real SQLite outbox."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook

from services.core.webhooks import new_secret
from services.store.webhooks import OutboxRecord, WebhookStore
from services.webhooks.sender import Sender
from tests.support.databases import fresh_database_url, migrated_engine

BODY = b'{"event":"sessionCreated","timestamp":1700000000000,"sessionId":"ses_A"}'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WebhookStore]:
    engine = migrated_engine(fresh_database_url("sqlite", tmp_path))
    yield WebhookStore(engine)
    engine.dispose()


def attempt(store: WebhookStore, handler: Callable[[httpx.Request], httpx.Response]) -> str:
    async def run() -> str:
        (due,) = store.due(datetime.now(UTC) + timedelta(days=2), 10)
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport) as client:
            sender = Sender(store, client, [0, 60, 120], 0.0, random.Random(1))
            return await sender.attempt(due)

    return asyncio.run(run())


def count(subscription: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "mediacdr_webhook_deliveries_total", {"subscription": subscription, "outcome": outcome}
    )
    return value or 0.0


def enqueue(store: WebhookStore, sid: str, secret: str | None = None) -> None:
    store.add("http://receiver.test/hook", secret=secret, headers=["X-A: b"], subscription_id=sid)
    store.enqueue(
        [OutboxRecord("evt-1", "sessionCreated", "ses_A", 0, 5, 1_700_000_000_000, BODY)], {}
    )


def test_a_signed_delivery(store: WebhookStore) -> None:
    secret = new_secret()
    enqueue(store, "signed", secret)
    seen: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    before = count("signed", "delivered")
    assert attempt(store, ok) == "delivered"
    (request,) = seen
    assert request.content == BODY and request.headers["x-a"] == "b"
    Webhook(secret).verify(request.content, dict(request.headers))
    assert count("signed", "delivered") == before + 1
    (row,) = store.deliveries("signed")
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 1, 204)


def test_retries_follow_the_schedule_then_fail(store: WebhookStore) -> None:
    enqueue(store, "flaky")

    def broken(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("no answer")

    started = datetime.now(UTC)
    assert attempt(store, broken) == "retry"
    (row,) = store.deliveries("flaky")
    assert "ConnectTimeout" in row["last_error"]
    assert timedelta(seconds=59) < row["next_attempt_at"] - started < timedelta(seconds=62)
    assert attempt(store, lambda _r: httpx.Response(503)) == "retry"
    assert attempt(store, lambda _r: httpx.Response(503)) == "failed"
    (row,) = store.deliveries("flaky")
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 3, 503)


def test_410_disables_the_subscription(store: WebhookStore) -> None:
    enqueue(store, "gone")
    assert attempt(store, lambda _r: httpx.Response(410)) == "disabled"
    assert store.get("gone").enabled is False
    (row,) = store.deliveries("gone")
    assert row["status"] == "pending"
