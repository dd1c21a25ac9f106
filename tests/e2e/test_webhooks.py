"""The webhooks service on a real broker against a real HTTP receiver (CONTRACT §13).

CDR records are produced the way the detector writes them (tests/support/cdr_story.py through
the detector's own output builder). Waiting is on the receiver (every request wakes the test) or
on the outbox rows (polled: SQL has no notification to await), never on a clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from services.config import DetectorSettings
from services.core.rules import Emit
from services.core.webhooks import new_secret
from services.detector.output import OutputBuilder
from services.store import make_engine
from services.store.migrate import upgrade
from services.store.webhooks import WebhookStore
from tests.support.cdr_story import busy_cluster
from tests.support.databases import fresh_database_url
from tests.support.endpoints import Endpoint, free_port, value
from tests.support.kafka import group_members, produce_many, wait_for_stable_group
from tests.support.receiver import Receiver, Request, first_deliveries, flaky, running_receiver
from tests.support.services import Deployment, cli, kill_9, new_deployment, running_service

FAST = json.dumps([0, 0.05, 0.1, 0.2, 0.3, 0.3, 0.3, 0.3])


@dataclass(frozen=True)
class Published:
    ids: list[str]  # ce_ids in production order
    key_of: dict[str, str]
    value_of: dict[str, bytes]

    def order_of(self, key: str) -> list[str]:
        return [i for i in self.ids if self.key_of[i] == key]


def publish(d: Deployment, sessions: int, t0: int | None = None) -> Published:
    """What the detector writes for a small busy cluster, on the deployment's CDR topic."""
    settings = DetectorSettings(**d.kafka_settings().model_dump())
    builder = OutputBuilder(settings)
    start = t0 if t0 is not None else int(time.time() * 1000)
    outputs = [
        builder.emit(e)
        for e in busy_cluster(sessions, participants=2, t0=start)
        if isinstance(e, Emit) and e.stream == "cdr"
    ]
    records = [(o.topic, o.key, o.value, list(o.headers), o.timestamp_ms) for o in outputs]
    asyncio.run(produce_many(d.bootstrap, records))
    ids = [dict(o.headers)["ce_id"].decode() for o in outputs]
    return Published(
        ids,
        {i: (o.key or b"").decode() for i, o in zip(ids, outputs, strict=True)},
        {i: o.value or b"" for i, o in zip(ids, outputs, strict=True)},
    )


def assert_in_order_per_key(published: Published, requests: list[Request]) -> None:
    delivered = first_deliveries(requests)
    for key in {published.key_of[i] for i in published.ids}:
        got = [i for i in delivered if published.key_of.get(i) == key]
        assert got == published.order_of(key), key


def all_delivered(published: Published) -> Callable[[list[Request]], bool]:
    wanted = set(published.ids)
    return lambda requests: wanted <= {r.headers["webhook-id"] for r in requests if r.status < 300}


def wait_rows(store: WebhookStore, condition: Callable[[WebhookStore], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition(store):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)  # polling the outbox: SQL has no notification to await


def mediacdr(d: Deployment, *args: str) -> str:
    return cli(d, *args).stdout


def test_signed_ordered_deliveries_through_random_failures(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    mediacdr(d, "migrate")
    secret = new_secret()
    with running_receiver(flaky(rate=0.3, max_failures=3)) as receiver:
        env = {
            "MEDIACDR_WEBHOOK_ENDPOINT": receiver.url,
            "MEDIACDR_WEBHOOK_SECRET": secret,
            "MEDIACDR_WEBHOOK_HEADERS": '["X-Mediacdr-Test: yes"]',
            "MEDIACDR_WEBHOOK_RETRY_SCHEDULE_S": FAST,
            "MEDIACDR_WEBHOOK_POLL_MS": "50",
        }
        with running_service(d, "webhooks", **env):
            published = publish(d, 40)
            receiver.wait(all_delivered(published))
        requests = list(receiver.requests)
    assert any(r.status == 500 for r in requests), "the receiver never failed"
    verifier = Webhook(secret)
    for r in requests:
        verifier.verify(r.body, r.headers)  # every attempt is signed afresh, and verifies
        assert r.body == published.value_of[r.headers["webhook-id"]]  # byte for byte
        assert r.headers["x-mediacdr-test"] == "yes"
        assert r.headers["content-type"] == "application/json"
    assert_in_order_per_key(published, requests)
    log = (tmp_path / "webhooks.log").read_text()
    assert secret not in log and secret.removeprefix("whsec_") not in log


def test_receiver_down_then_back_then_gone_then_replayed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    mediacdr(d, "migrate")
    store = WebhookStore(make_engine(d.env()["MEDIACDR_DATABASE_URL"]))
    receiver = Receiver()
    receiver.start()
    receiver.stop()  # down: connection refused on its port
    env = {
        "MEDIACDR_WEBHOOK_ENDPOINT": receiver.url,
        "MEDIACDR_WEBHOOK_RETRY_SCHEDULE_S": json.dumps([0] + [0.2] * 40),
        "MEDIACDR_WEBHOOK_POLL_MS": "50",
    }
    try:
        with running_service(d, "webhooks", **env):
            published = publish(d, 20)
            wait_rows(
                store,
                lambda s: any(r["attempts"] >= 2 for r in s.deliveries("default")),
                "the service retried while the receiver was down",
            )
            receiver.start()  # back, same port
            receiver.wait(all_delivered(published))
            assert_in_order_per_key(published, receiver.requests)

            # 410 Gone disables the subscription; what comes meanwhile waits for re-enabling.
            receiver.answer = lambda _p, _h, _b: 410
            late = publish(d, 1)
            wait_rows(store, lambda s: not s.get("default").enabled, "410 disabled it")
            assert "410 Gone" in (store.get("default").disabled_reason or "")
            receiver.answer = lambda _p, _h, _b: 204
            listed = mediacdr(d, "webhooks", "list")
            assert "disabled" in listed
            mediacdr(d, "webhooks", "enable", "default")
            receiver.wait(all_delivered(late))

            # A replay re-sends with the same webhook-id.
            again = published.ids[0]
            before = sum(1 for r in receiver.requests if r.headers["webhook-id"] == again)
            assert "1 deliveries" in mediacdr(
                d, "webhooks", "replay", "default", "--event-id", again
            )
            receiver.wait(
                lambda rs: sum(1 for r in rs if r.headers["webhook-id"] == again) > before
            )
    finally:
        receiver.stop()
        store.engine.dispose()


def test_a_subscription_added_with_the_cli_shows_its_secret_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    mediacdr(d, "migrate")
    with running_receiver() as receiver:
        added = mediacdr(
            d, "webhooks", "add", receiver.url, "--id", "crashes", "--event", "nodeCrashed"
        )
        secret = next(line.split()[1] for line in added.splitlines() if line.startswith("secret"))
        assert secret.startswith("whsec_")
        assert secret not in mediacdr(d, "webhooks", "list")
        with running_service(d, "webhooks", MEDIACDR_WEBHOOK_POLL_MS="50"):
            published = publish(d, 9)
            crash = [i for i in published.ids if b'"event":"nodeCrashed"' in published.value_of[i]]
            receiver.wait(lambda rs: len(rs) >= 1)
        (request,) = receiver.requests
        assert [request.headers["webhook-id"]] == crash  # the event filter holds
        Webhook(secret).verify(request.body, request.headers)
        assert secret not in (tmp_path / "webhooks.log").read_text()


def test_kill_9_during_retries_loses_nothing(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    d = new_deployment(kafka_bootstrap, tmp_path)
    url = fresh_database_url("postgresql", tmp_path, postgres_url)
    upgrade(url)
    failing = True

    def answer(_p: str, _h: dict[str, str], _b: bytes) -> int:
        return 500 if failing else 204

    env = {
        "MEDIACDR_DATABASE_URL": url,
        "MEDIACDR_WEBHOOK_RETRY_SCHEDULE_S": json.dumps([0] + [0.3] * 60),
        "MEDIACDR_WEBHOOK_POLL_MS": "50",
    }
    with running_receiver(answer) as receiver:
        env["MEDIACDR_WEBHOOK_ENDPOINT"] = receiver.url
        with running_service(d, "webhooks", log_name="webhooks-1", **env) as first:
            published = publish(d, 60)
            receiver.wait(lambda rs: sum(1 for r in rs if r.status == 500) >= 60)
            kill_9(first)
        failing = False
        with running_service(d, "webhooks", log_name="webhooks-2", **env):
            receiver.wait(all_delivered(published))
        assert_in_order_per_key(published, receiver.requests)
    store = WebhookStore(make_engine(url))
    assert store.counts() == {"default": {"delivered": len(published.ids)}}
    store.engine.dispose()


def test_two_processes_in_one_group_split_the_sending_by_partition(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    """Scale-out: two webhooks processes share the outbox (one PostgreSQL) and the CDR topic's
    partitions (one consumer group). Each sends the deliveries of the partitions it reads, so
    with the group settled every delivery goes out once, from one process, in order per key."""
    d = new_deployment(kafka_bootstrap, tmp_path)
    url = fresh_database_url("postgresql", tmp_path, postgres_url)
    upgrade(url)
    env = {"MEDIACDR_DATABASE_URL": url, "MEDIACDR_WEBHOOK_POLL_MS": "50"}
    with running_receiver() as receiver, ExitStack() as stack:
        env["MEDIACDR_WEBHOOK_ENDPOINT"] = receiver.url
        endpoints = []
        for n in (1, 2):
            port = free_port()
            name = f"webhooks-{n}"
            process = stack.enter_context(
                running_service(
                    d, "webhooks", log_name=name, MEDIACDR_METRICS_ADDR=f"127.0.0.1:{port}", **env
                )
            )
            endpoints.append(Endpoint(name, port, process, tmp_path / f"{name}.log"))

        group = d.env()["MEDIACDR_WEBHOOK_GROUP_ID"]
        wait_for_stable_group(d.bootstrap, group, 2)
        published = publish(d, 60)
        receiver.wait(all_delivered(published))
        assert asyncio.run(group_members(d.bootstrap, group)) == ("Stable", 2)

        def delivered() -> list[float]:
            """Per process, the deliveries it counted (after the receiver saw them)."""
            texts = [e.poll(lambda r: r.status_code == 200, "/metrics", "up") for e in endpoints]
            name = "mediacdr_webhook_deliveries_total"
            return [value(t, name, outcome="delivered") or 0 for t in texts]

        deadline = time.monotonic() + 30
        while sum(sent := delivered()) < len(published.ids):
            assert time.monotonic() < deadline, f"counted {sent} of {len(published.ids)}"
            time.sleep(0.1)  # polling the endpoints: there is nothing to await
        requests = list(receiver.requests)
    assert_in_order_per_key(published, requests)
    assert len(requests) == len(published.ids), "a delivery was sent by both processes"
    assert sum(sent) == len(published.ids)
    assert all(n > 0 for n in sent), f"one process sent nothing: {sent}"
