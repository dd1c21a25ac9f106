"""Secrets never appear in logs or answers (docs/RELIABILITY.md, Security).

The api and the webhooks service run as processes at DEBUG level, through the paths where a
secret could slip out: refused and accepted requests, a subscription created (its secret is
shown that once) and listed, deliveries that fail and are retried, and Kafka clients with SASL
credentials that a plain-text broker refuses. Then every log and every answer is searched for
every secret value.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from services.core.webhooks import new_secret
from tests.support.endpoints import free_port
from tests.support.kafka import produce
from tests.support.receiver import Request, running_receiver
from tests.support.services import Deployment, cli, new_deployment, running_service

T0 = 1_764_000_000_000


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Deployment:
    d = new_deployment(kafka_bootstrap, tmp_path)
    cli(d, "migrate")
    return d


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """An HTTP server has no readiness event to await: poll, with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def test_no_secret_in_any_log_or_answer(deployment: Deployment) -> None:
    d = deployment
    tag = uuid.uuid4().hex[:12]
    api_secret = f"api-secret-{tag}"
    env_webhook_secret = new_secret()
    header_token = f"header-token-{tag}"
    sasl_password = f"sasl-password-{tag}"
    answers: list[str] = []

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api_env = {"MEDIACDR_API_ADDR": f"127.0.0.1:{port}", "MEDIACDR_API_SECRET": api_secret}
    with (
        running_receiver(lambda _p, _h, _b: 500) as receiver,
        running_service(d, "api", "--loglevel", "DEBUG", **api_env) as api,
    ):
        wait_healthy(f"{base}/health", api)
        auth = {"Authorization": f"Bearer {api_secret}"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic !!"}):
            refused = httpx.get(f"{base}/api/webhooks", headers=headers)
            assert refused.status_code == 401
            answers.append(refused.text + json.dumps(dict(refused.headers)))
        created = httpx.post(
            f"{base}/api/webhooks",
            headers=auth,
            json={"url": receiver.url, "headers": [f"Authorization: Bearer {header_token}"]},
        )
        assert created.status_code == 201, created.text
        subscription_secret = created.json()["secret"]  # shown this once, by design
        assert subscription_secret.startswith("whsec_")
        for path in ("/api/webhooks", "/api/dashboard", "/openapi.json"):
            listed = httpx.get(f"{base}{path}", headers=auth)
            assert listed.status_code == 200
            answers.append(listed.text)
        ingest = httpx.post(f"{base}/api/ingest/liveness", headers=auth, content=b"{nope")
        answers.append(ingest.text)

        hooks_env = {
            "MEDIACDR_WEBHOOK_ENDPOINT": receiver.url,
            "MEDIACDR_WEBHOOK_SECRET": env_webhook_secret,
            "MEDIACDR_WEBHOOK_HEADERS": json.dumps([f"X-Token: {header_token}"]),
            "MEDIACDR_WEBHOOK_RETRY_SCHEDULE_S": "[0, 0.2]",
            "MEDIACDR_WEBHOOK_JITTER": "0",
        }
        with running_service(d, "webhooks", "--loglevel", "DEBUG", **hooks_env):
            body = {"event": "sessionCreated", "timestamp": T0, "sessionId": "ses_S"}
            asyncio.run(
                produce(d.bootstrap, [(d.topic("cdr"), b"ses_S", json.dumps(body).encode())])
            )

            def both_failed_twice(requests: list[Request]) -> bool:
                return len(requests) >= 4  # two subscriptions, two attempts each

            receiver.wait(both_failed_twice, timeout=90)
        answers.append(cli(d, "webhooks", "list").stdout)

    sasl_env = {
        "MEDIACDR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "MEDIACDR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "MEDIACDR_KAFKA_SASL_USERNAME": "mediacdr",
        "MEDIACDR_KAFKA_SASL_PASSWORD": sasl_password,
    }
    refused_by_broker = cli(d, "topics", "create", check=False, **sasl_env)
    assert refused_by_broker.returncode != 0  # the test broker speaks plain text only
    no_user = sasl_env | {"MEDIACDR_KAFKA_SASL_USERNAME": ""}
    misconfigured = cli(d, "tail", d.topic("cdr"), check=False, **no_user)
    assert misconfigured.returncode != 0 and "MEDIACDR_KAFKA_SASL_USERNAME" in misconfigured.stderr
    answers += [p.stdout + p.stderr for p in (refused_by_broker, misconfigured)]

    logs = {path.name: path.read_text(errors="replace") for path in d.workdir.glob("*.log")}
    assert {"api.log", "webhooks.log"} <= set(logs)
    assert "DEBUG" in logs["api.log"] and "DEBUG" in logs["webhooks.log"]
    secrets = {
        "MEDIACDR_API_SECRET": api_secret,
        "MEDIACDR_WEBHOOK_SECRET": env_webhook_secret.removeprefix("whsec_"),
        "a subscription's secret": subscription_secret.removeprefix("whsec_"),
        "a webhook header": header_token,
        "MEDIACDR_KAFKA_SASL_PASSWORD": sasl_password,
    }
    for name, value in secrets.items():
        for log_name, text in logs.items():
            assert value not in text, f"{name} in {log_name}"
        for answer in answers:
            assert value not in answer, f"{name} in an answer: {answer[:300]}"
