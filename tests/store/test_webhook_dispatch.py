"""The sender's loop against a real receiver and a real outbox (SQLite and PostgreSQL): every
delivery arrives, in CDR order per key, through failures and retries, and every result is
stored."""

from __future__ import annotations

import asyncio
import random

import pytest

from services.store.webhooks import OutboxRecord, WebhookStore
from services.webhooks.dispatch import Dispatcher
from services.webhooks.http import open_post
from services.webhooks.sender import Sender
from tests.support.receiver import Receiver, first_deliveries, flaky, running_receiver

pytestmark = pytest.mark.contract

KEYS = 7


@pytest.fixture
def store(webhook_store: WebhookStore) -> WebhookStore:
    return webhook_store


def records(count: int) -> list[OutboxRecord]:
    out = []
    for n in range(count):
        body = f'{{"event":"signalSent","timestamp":{1_700_000_000_000 + n},"n":{n}}}'.encode()
        key = f"ses_{n % KEYS}"
        out.append(OutboxRecord(f"id-{n}", "signalSent", key, 0, n, 1_700_000_000_000 + n, body))
    return out


async def deliver_all(store: WebhookStore, receiver: Receiver, count: int) -> None:
    """Run the dispatcher until the receiver has a 2xx for all ``count`` events, then stop it
    (a clean stop stores what was in flight)."""
    stop, wake = asyncio.Event(), asyncio.Event()
    async with open_post(timeout_s=5, concurrency=3) as post:
        sender = Sender(post, [0, 0, 0, 0, 0], 0.0, random.Random(3))
        dispatcher = Dispatcher(store, sender, 3, wake, page=4)
        running = asyncio.create_task(dispatcher.run(stop, lambda: None, poll_s=0.05, drain_s=5))
        await asyncio.to_thread(
            receiver.wait, lambda requests: len(first_deliveries(requests)) == count
        )
        stop.set()
        await running


def test_every_key_in_order_through_failures(store: WebhookStore) -> None:
    batch = records(60)
    with running_receiver(flaky(0.3, max_failures=3, seed=11)) as receiver:
        store.add(receiver.url, secret=None, subscription_id="s")
        store.enqueue(batch, {})
        asyncio.run(deliver_all(store, receiver, len(batch)))
        requests = list(receiver.requests)
    delivered = first_deliveries(requests)
    for k in range(KEYS):
        key_ids = [r.event_id for r in batch if r.key == f"ses_{k}"]
        assert [i for i in delivered if i in key_ids] == key_ids
    assert any(r.status == 500 for r in requests)  # the failures happened
    assert store.counts() == {"s": {"delivered": 60}}
    rows = store.deliveries("s")
    retried = {r.headers["webhook-id"] for r in requests if r.status == 500}
    assert {r["event_id"] for r in rows if r["attempts"] > 1} == retried
