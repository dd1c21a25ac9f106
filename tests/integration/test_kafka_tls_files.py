"""TLS files named in the settings reach the context every Kafka client gets: the CA that signs
the brokers' certificates and, for mutual TLS, an encrypted client key with its password.
Certificates are made by the openssl command for this test; no TLS broker is needed."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from services.config import KafkaSettings
from services.kafka_clients import client_options, faust_options

KEY_PASSWORD = "key-pw-for-tests"


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make the test certificates"
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=mediacdr test CA", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-keyout", "client.key", "-out", "client.csr",
             "-subj", "/CN=mediacdr", "-passout", f"pass:{KEY_PASSWORD}", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "client.pem", "-days", "2", cwd=d)  # fmt: skip
    return d


def _settings(pki: Path, **extra: object) -> KafkaSettings:
    values: dict[str, object] = {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": str(pki / "ca.pem"),
        "kafka_ssl_certfile": str(pki / "client.pem"),
        "kafka_ssl_keyfile": str(pki / "client.key"),
        "kafka_ssl_key_password": KEY_PASSWORD,
    }
    return KafkaSettings(**(values | extra))


def test_the_ca_and_the_client_certificate_are_loaded(pki: Path) -> None:
    context = client_options(_settings(pki))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(x[0] for x in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": "mediacdr test CA"} in subjects
    faust_context = faust_options(_settings(pki))["broker_credentials"].context
    assert {"commonName": "mediacdr test CA"} in [
        dict(x[0] for x in ca["subject"]) for ca in faust_context.get_ca_certs()
    ]


def test_a_wrong_key_password_fails_at_start_not_later(pki: Path) -> None:
    with pytest.raises(ssl.SSLError):
        client_options(_settings(pki, kafka_ssl_key_password="wrong"))
