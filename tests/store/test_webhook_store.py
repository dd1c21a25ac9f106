"""The webhook outbox on SQLite and PostgreSQL: dedup, per-key heads, attempts, replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.store.webhook_outbox import Attempt, Result
from services.store.webhooks import OutboxRecord, UnknownSubscription, WebhookStore

pytestmark = pytest.mark.contract


@pytest.fixture
def store(webhook_store: WebhookStore) -> WebhookStore:
    return webhook_store


def rec(
    n: int, key: str = "ses_A", event: str = "participantJoined", partition: int = 3
) -> OutboxRecord:
    body = f'{{"event":"{event}","timestamp":{1_700_000_000_000 + n},"n":{n}}}'.encode()
    return OutboxRecord(f"id-{key}-{n}", event, key, partition, n, 1_700_000_000_000 + n, body)


def test_enqueue_fans_out_by_filter_deduplicates_and_stores_positions(store: WebhookStore) -> None:
    store.add("http://a.example/hook", secret=None, subscription_id="all")
    store.add(
        "http://b.example/hook", secret=None, events=["nodeCrashed"], subscription_id="crashes"
    )
    batch = [rec(1), rec(2, key="node-1", event="nodeCrashed")]
    assert store.enqueue(batch, {("mediacdr.cdr", 3): 3}) == 3
    assert store.enqueue(batch, {("mediacdr.cdr", 3): 3}) == 0  # redelivered: nothing new
    assert store.counts() == {"all": {"pending": 2}, "crashes": {"pending": 1}}
    assert store.positions() == {("mediacdr.cdr", 3): 3}
    (stored,) = store.deliveries("crashes")
    assert stored["body"] == batch[1].body and stored["event_id"] == "id-node-1-2"


def test_only_the_head_of_each_key_is_due_and_keys_run_in_parallel(store: WebhookStore) -> None:
    store.add("http://a.example/hook", secret=None, subscription_id="s")
    store.enqueue([rec(1), rec(2), rec(3), rec(4, key="ses_B")], {})
    now = datetime.now(UTC) + timedelta(seconds=1)
    heads = store.due(now, 10)
    assert sorted((d.record_key, d.source_offset) for d in heads) == [("ses_A", 1), ("ses_B", 4)]
    first = next(d for d in heads if d.source_offset == 1)
    later = now + timedelta(minutes=5)
    store.record_attempt(
        first, at=now, status_code=500, error=None, result="retry", next_attempt_at=later
    )
    assert [d.source_offset for d in store.due(now, 10)] == [4]  # ses_A waits for its head
    assert {d.source_offset for d in store.due(later, 10)} == {1, 4}
    store.record_attempt(first, at=later, status_code=200, error=None, result="delivered")
    assert {d.source_offset for d in store.due(later, 10)} == {2, 4}
    two = next(d for d in store.due(later, 10) if d.source_offset == 2)
    store.record_attempt(two, at=later, status_code=None, error="timeout", result="failed")
    assert {d.source_offset for d in store.due(later, 10)} == {3, 4}  # a failure unblocks
    rows = {r["source_offset"]: r for r in store.deliveries("s")}
    assert (rows[1]["status"], rows[1]["attempts"], rows[1]["last_status_code"]) == (
        "delivered",
        2,
        200,
    )
    assert (rows[2]["status"], rows[2]["last_error"]) == ("failed", "timeout")


def test_410_disables_until_enabled_and_the_delivery_waits(store: WebhookStore) -> None:
    store.add("http://a.example/hook", secret=None, subscription_id="s")
    store.enqueue([rec(1)], {})
    now = datetime.now(UTC) + timedelta(seconds=1)
    (head,) = store.due(now, 10)
    store.record_attempt(
        head, at=now, status_code=410, error=None, result="disabled", disable_reason="410 Gone"
    )
    assert store.due(now, 10) == []
    assert (store.get("s").enabled, store.get("s").disabled_reason) == (False, "410 Gone")
    store.enqueue([rec(2)], {})  # nothing is lost while it is disabled
    store.set_enabled("s", True)
    assert [d.source_offset for d in store.due(now, 10)] == [1]


def test_replay_by_event_id_and_time(store: WebhookStore) -> None:
    store.add("http://a.example/hook", secret=None, subscription_id="s")
    store.enqueue([rec(1), rec(2, key="ses_B")], {})
    now = datetime.now(UTC) + timedelta(seconds=1)
    for d in store.due(now, 10):
        store.record_attempt(d, at=now, status_code=204, error=None, result="delivered")
    assert store.due(now + timedelta(seconds=5), 10) == []
    assert store.replay("s", event_id="id-ses_A-1") == 1
    assert [d.event_id for d in store.due(now + timedelta(seconds=5), 10)] == ["id-ses_A-1"]
    since = datetime.fromtimestamp((1_700_000_000_000 + 2) / 1000, UTC)
    assert store.replay("s", since=since) == 1
    assert store.replay("s", until=since) == 1
    with pytest.raises(UnknownSubscription):
        store.replay("nope")


def test_the_env_subscription_is_default_and_removal_takes_its_deliveries(
    store: WebhookStore,
) -> None:
    store.put_default("http://env.example/hook", secret=None, headers=["X-A: 1"], events=None)
    store.put_default("http://env.example/v2", secret=None, headers=[], events=["nodeCrashed"])
    (default,) = store.subscriptions()
    assert (default.id, default.url, default.events) == (
        "default",
        "http://env.example/v2",
        ["nodeCrashed"],
    )
    store.put_default(None, secret=None, headers=[], events=None)
    assert store.get("default").enabled is False
    store.enqueue([rec(1, event="nodeCrashed")], {})
    store.remove("default")
    assert store.counts() == {}
    with pytest.raises(UnknownSubscription):
        store.remove("default")


def test_many_attempts_are_stored_in_one_batch(store: WebhookStore) -> None:
    store.add("http://a.example/hook", secret=None, subscription_id="s")
    store.add("http://b.example/hook", secret=None, subscription_id="t", events=["nodeCrashed"])
    store.enqueue(
        [rec(1), rec(2, key="ses_B"), rec(3, key="ses_C"), rec(4, event="nodeCrashed")], {}
    )
    now = datetime.now(UTC) + timedelta(seconds=1)
    heads = {(d.subscription_id, d.source_offset): d for d in store.due(now, 10)}
    later = now + timedelta(minutes=5)

    def done(sid: str, offset: int, result: Result, **kw: Any) -> Attempt:
        return Attempt(
            sid, heads[(sid, offset)].event_id, now, kw.pop("code", 200), None, result, **kw
        )

    store.record_attempts(
        [
            done("s", 1, "delivered"),
            done("s", 2, "retry", code=503, next_attempt_at=later),
            done("s", 3, "failed", code=500),
            done("t", 4, "disabled", code=410, next_attempt_at=now, disable_reason="410 Gone"),
        ]
    )
    rows = {r["source_offset"]: r for r in store.deliveries("s")}
    assert [(rows[n]["status"], rows[n]["attempts"]) for n in (1, 2, 3, 4)] == [
        ("delivered", 1),
        ("pending", 1),
        ("failed", 1),
        ("pending", 0),
    ]
    assert rows[1]["delivered_at"] == now and rows[2]["next_attempt_at"] == later
    assert (store.get("t").enabled, store.get("t").disabled_reason) == (False, "410 Gone")
    assert store.pending_counts() == {"s": 2, "t": 1}


def test_heads_are_probed_per_key_and_a_head_not_due_holds_its_key(store: WebhookStore) -> None:
    store.add("http://a.example/hook", secret=None, subscription_id="s")
    store.enqueue([rec(n, key=f"ses_{n % 150}") for n in range(300)], {})  # two per key
    now = datetime.now(UTC) + timedelta(seconds=1)
    (first,) = store.due(now, 1)
    store.record_attempt(
        first,
        at=now,
        status_code=503,
        error=None,
        result="retry",
        next_attempt_at=now + timedelta(minutes=5),
    )
    with store.turn() as turn:
        keys = [("s", f"ses_{k}") for k in range(150)] + [("s", "nope"), ("x", "ses_1")]
        found = {d.record_key: d.source_offset for d in turn.heads(keys, now)}
        assert len(found) == 149 and first.record_key not in found  # its next event waits
        assert all(found[f"ses_{k}"] == k for k in range(150) if f"ses_{k}" != first.record_key)
        assert set(turn.due_keys(now, 500)) == {("s", k) for k in found}


def test_a_turn_sees_only_the_deliveries_of_the_partitions_it_owns(store: WebhookStore) -> None:
    """Several webhooks processes in one group: each sends the deliveries of the CDR partitions
    its outbox consumer is assigned, so no key is served by two processes at once."""
    store.add("http://a.example/hook", secret=None, subscription_id="s")
    store.enqueue([rec(n, key=f"ses_{n}", partition=n % 3) for n in range(9)], {})
    now = datetime.now(UTC) + timedelta(seconds=1)
    every = [("s", f"ses_{n}") for n in range(9)]
    with store.turn({0, 2}) as turn:
        assert sorted(turn.due_keys(now, 100)) == sorted(
            ("s", f"ses_{n}") for n in range(9) if n % 3 != 1
        )
        assert sorted(d.source_offset for d in turn.heads(every, now)) == [0, 2, 3, 5, 6, 8]
    with store.turn(set()) as turn:  # not assigned yet
        assert turn.due_keys(now, 100) == [] and turn.heads(every, now) == []
    with store.turn() as turn:  # one process: everything
        assert len(turn.due_keys(now, 100)) == 9 and len(turn.heads(every, now)) == 9
