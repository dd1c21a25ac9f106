"""Kafka security settings reach every client (issue 8, docs/RELIABILITY.md Security).

The clients are built as the services build them and never started, so no SASL broker is
needed: what is asserted is what aiokafka (directly, or through Faust) received.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from services.config import ApiSettings, KafkaSettings, WebhookSettings
from services.kafka_clients import (
    client_options,
    faust_options,
    new_admin,
    new_consumer,
    new_producer,
)

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "sasl-pw-never-shown"
SASL = {
    "kafka_bootstrap": "broker-1:9093,broker-2:9093",
    "kafka_security_protocol": "SASL_PLAINTEXT",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "mediacdr",
    "kafka_sasl_password": PASSWORD,
}


CLIENT_FIELDS = (
    "_bootstrap_servers",
    "_security_protocol",
    "_ssl_context",
    "_sasl_mechanism",
    "_sasl_plain_username",
    "_sasl_plain_password",
)


def _received(kafka: KafkaSettings | str) -> list[dict[str, Any]]:
    """What the AIOKafkaClient inside a consumer, a producer and an admin client received;
    each is built as the services build it (inside a loop, as aiokafka requires), never
    started, and closed."""

    async def build() -> list[dict[str, Any]]:
        consumer = new_consumer(kafka, "t", group_id="g")
        producer = new_producer(kafka, acks="all")
        admin = new_admin(kafka)
        inner = [consumer._client, producer.client, admin._client]
        received = [{f.lstrip("_"): getattr(c, f) for f in CLIENT_FIELDS} for c in inner]
        await consumer.stop()
        await producer.stop()
        await admin.close()
        return received

    return asyncio.run(build())


def test_sasl_settings_reach_every_aiokafka_client() -> None:
    for received in _received(KafkaSettings(**SASL)):
        assert received == {
            "bootstrap_servers": "broker-1:9093,broker-2:9093",
            "security_protocol": "SASL_PLAINTEXT",
            "ssl_context": None,
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "mediacdr",
            "sasl_plain_password": PASSWORD,
        }


def test_a_bare_bootstrap_is_plain_text() -> None:
    assert client_options("127.0.0.1:9092") == {"bootstrap_servers": "127.0.0.1:9092"}
    for received in _received("127.0.0.1:9092"):
        assert received["security_protocol"] == "PLAINTEXT"
    assert faust_options(KafkaSettings()) == {}


def test_sasl_ssl_uses_the_system_cas_and_checks_the_host_unless_told() -> None:
    settings = KafkaSettings(**SASL | {"kafka_security_protocol": "sasl_ssl"})
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert context.check_hostname and context.get_ca_certs() is not None
    relaxed = KafkaSettings(
        **SASL | {"kafka_security_protocol": "SASL_SSL"}, kafka_ssl_check_hostname=False
    )
    assert not client_options(relaxed)["ssl_context"].check_hostname


def test_faust_gets_the_same_credentials() -> None:
    """The mapping the detector's Faust app is built with; Faust turns ``broker_credentials``
    into the arguments of each aiokafka consumer and producer it makes."""
    settings = KafkaSettings(**SASL | {"kafka_security_protocol": "SASL_SSL"})

    async def build() -> tuple[Any, dict[str, Any]]:
        app = faust.App("t-security", broker="kafka://broker-1:9093", **faust_options(settings))
        producer = app.producer._new_producer()  # the aiokafka producer Faust would start
        inner = producer.client
        received = {f.lstrip("_"): getattr(inner, f) for f in CLIENT_FIELDS}
        await producer.stop()
        return app, received

    app, received = asyncio.run(build())
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert auth["security_protocol"] == "SASL_SSL"
    assert (auth["sasl_mechanism"], auth["sasl_plain_username"]) == ("SCRAM-SHA-512", "mediacdr")
    assert auth["sasl_plain_password"] == PASSWORD
    assert auth["ssl_context"] is not None
    assert (received["security_protocol"], received["sasl_plain_password"]) == (
        "SASL_SSL",
        PASSWORD,
    )
    assert received["ssl_context"] is auth["ssl_context"]
    assert PASSWORD not in repr(app.conf.broker_credentials)


def test_faust_ssl_without_sasl() -> None:
    settings = KafkaSettings(kafka_security_protocol="SSL")
    credentials = faust_options(settings)["broker_credentials"]
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_the_detector_app_is_built_with_the_credentials() -> None:
    from services.config import DetectorSettings
    from services.detector.app import build_detector

    settings = DetectorSettings(**SASL)
    detector = build_detector(settings)
    app = detector.app
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert auth["sasl_plain_password"] == PASSWORD
    assert detector.offsets.kafka is settings  # its own consumer of end and committed offsets


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs MEDIACDR_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"}, "not SASL_PLAINTEXT"),
        ({"kafka_ssl_cafile": "/ca.pem"}, "not SSL or SASL_SSL"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/c.pem"}, "go together"),
        ({"kafka_security_protocol": "KERBEROS"}, "kafka_security_protocol"),
        (SASL | {"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)
def test_settings_a_protocol_would_ignore_are_refused(
    fields: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint) as refused:
        KafkaSettings(**fields)
    assert "'p'" not in str(refused.value) and "/ca.pem" not in str(refused.value)


def test_secrets_are_secret_in_settings() -> None:
    """SecretStr for every secret; reprs and validation errors never show one."""
    api = ApiSettings(api_secret="api-secret-x", database_url="postgresql+psycopg://u:db-pw@h/db")
    hooks = WebhookSettings(
        webhook_secret="whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
        webhook_headers=["Authorization: Bearer header-token"],
    )
    kafka = KafkaSettings(**SASL | {"kafka_ssl_key_password": None})
    shown = " ".join(map(repr, (api, hooks, kafka))) + " ".join(map(str, (api, hooks, kafka)))
    for secret in ("api-secret-x", "db-pw", "c2VjcmV0", "header-token", PASSWORD):
        assert secret not in shown, secret
    assert api.api_secret is not None and api.api_secret.get_secret_value() == "api-secret-x"
    with pytest.raises(ValidationError) as refused:
        ApiSettings(api_secret="api-secret-x", partitions="many")
    assert "api-secret-x" not in str(refused.value)


# -- every client is built in services/kafka_clients.py --------------------------------------

CONSTRUCTORS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient", "AIOKafkaClient"}
#: Connection-taking functions whose first argument must carry the settings, not the bootstrap.
TAKES_CONNECTION = {
    "new_consumer",
    "new_producer",
    "new_admin",
    "client_options",
    "started_reader",
    "topic_partitions",
    "read_topic",
    "collect",
    "export_cdr",
    "BrokerOffsets",
}
#: The local development broker (services/localdev) is plain text by construction.
EXEMPT = {Path("services/kafka_clients.py"), Path("services/localdev/kafka.py")}


def _calls(path: Path) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            yield name, node


def test_no_kafka_client_is_built_around_the_security_settings() -> None:
    """So that a new client cannot forget them: services build clients only through
    services/kafka_clients.py, and pass it the settings (a bare bootstrap means plain text)."""
    found = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative in EXEMPT:
            continue
        for name, call in _calls(path):
            if name in CONSTRUCTORS:
                found.append(f"{relative}:{call.lineno} builds {name} itself")
            first = call.args[0] if call.args else None
            passes_bootstrap = isinstance(first, ast.Attribute) and first.attr == "kafka_bootstrap"
            if name in TAKES_CONNECTION and passes_bootstrap:
                found.append(f"{relative}:{call.lineno} passes only the bootstrap to {name}")
    assert not found, found
