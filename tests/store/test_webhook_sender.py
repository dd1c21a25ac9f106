"""One attempt end to end: the sender's HTTP adapter against a real local receiver, its result
stored in a real SQLite outbox."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook

from services.core.webhooks import new_secret
from services.store.webhooks import OutboxRecord, WebhookStore
from services.webhooks.http import open_post
from services.webhooks.sender import Sender
from tests.support.databases import fresh_database_url, migrated_engine
from tests.support.receiver import Receiver, running_receiver

BODY = b'{"event":"sessionCreated","timestamp":1700000000000,"sessionId":"ses_A"}'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WebhookStore]:
    engine = migrated_engine(fresh_database_url("sqlite", tmp_path))
    yield WebhookStore(engine)
    engine.dispose()


def attempt(store: WebhookStore) -> str:
    """Attempt the one pending delivery (due or not) and store the result."""

    async def run() -> str:
        (due,) = store.due(datetime.now(UTC) + timedelta(days=2), 10)
        async with open_post(timeout_s=5, concurrency=4) as post:
            sender = Sender(post, [0, 60, 120], 0.0, random.Random(1))
            result = await sender.attempt(due)
        store.record_attempts([result])
        return result.result

    return asyncio.run(run())


def count(subscription: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "mediacdr_webhook_deliveries_total", {"subscription": subscription, "outcome": outcome}
    )
    return value or 0.0


def enqueue(store: WebhookStore, sid: str, url: str, secret: str | None = None) -> None:
    store.add(url, secret=secret, headers=["X-A: b"], subscription_id=sid)
    store.enqueue(
        [OutboxRecord("evt-1", "sessionCreated", "ses_A", 0, 5, 1_700_000_000_000, BODY)], {}
    )


def closed_port_url() -> str:
    with socket.socket() as s:  # a port nobody listens on once the socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def answering(status: int) -> Receiver:
    return Receiver(answer=lambda _p, _h, _b: status)


def test_a_signed_delivery(store: WebhookStore) -> None:
    secret = new_secret()
    with running_receiver() as receiver:
        enqueue(store, "signed", receiver.url, secret)
        before = count("signed", "delivered")
        assert attempt(store) == "delivered"
        receiver.wait(lambda requests: len(requests) == 1)
    (request,) = receiver.requests
    assert request.body == BODY and request.headers["x-a"] == "b"
    assert request.headers["content-type"] == "application/json"
    Webhook(secret).verify(request.body, request.headers)
    assert count("signed", "delivered") == before + 1
    (row,) = store.deliveries("signed")
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 1, 204)


def test_retries_follow_the_schedule_then_fail(store: WebhookStore) -> None:
    url = closed_port_url()
    enqueue(store, "flaky", url)
    started = datetime.now(UTC)
    assert attempt(store) == "retry"  # refused: no answer at all
    (row,) = store.deliveries("flaky")
    assert row["last_status_code"] is None and "Connect" in row["last_error"]
    assert timedelta(seconds=59) < row["next_attempt_at"] - started < timedelta(seconds=62)
    receiver = answering(503)
    receiver.port = int(url.rsplit(":", 1)[1].split("/")[0])
    receiver.start()
    try:
        assert attempt(store) == "retry"
        assert attempt(store) == "failed"
    finally:
        receiver.stop()
    (row,) = store.deliveries("flaky")
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 3, 503)


def test_a_redirect_is_an_answer_not_followed(store: WebhookStore) -> None:
    paths: list[str] = []

    class Moved(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            paths.append(self.path)
            self.send_response(307)
            self.send_header("location", "/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        enqueue(store, "moved", f"http://127.0.0.1:{server.server_address[1]}/hook")
        assert attempt(store) == "retry"
    finally:
        server.shutdown()
        server.server_close()
    assert paths == ["/hook"]
    (row,) = store.deliveries("moved")
    assert row["last_status_code"] == 307


def test_410_disables_the_subscription(store: WebhookStore) -> None:
    with running_receiver(lambda _p, _h, _b: 410) as receiver:
        enqueue(store, "gone", receiver.url)
        assert attempt(store) == "disabled"
    assert store.get("gone").enabled is False
    (row,) = store.deliveries("gone")
    assert row["status"] == "pending"


def test_with_private_addresses_refused_a_name_that_resolves_to_one_is_not_sent_to() -> None:
    """DNS rebinding: the subscription's name was checked when it was created; if it resolves
    to a private address at send time, the connection is refused there too."""

    async def post_to(url: str, *, allow_private: bool) -> tuple[int | None, str | None]:
        async with open_post(timeout_s=5, concurrency=1, allow_private=allow_private) as post:
            answer = await post(url, BODY, [])
        return answer.status_code, answer.error

    with running_receiver() as receiver:  # answers 204
        by_name = receiver.url.replace("127.0.0.1", "localhost")
        status, error = asyncio.run(post_to(by_name, allow_private=False))
        assert status is None and error is not None and "no public address" in error
        assert receiver.requests == []
        # An address written in the URL is not resolved: it was checked at creation.
        assert asyncio.run(post_to(receiver.url, allow_private=False)) == (204, None)
        assert len(receiver.requests) == 1
