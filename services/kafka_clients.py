"""Every Kafka client mediacdr builds, with the broker's security settings applied.

The services, the operations commands and the simulator build their aiokafka consumers,
producers and admin clients here and nowhere else (a test holds the code to that), so
``MEDIACDR_KAFKA_SECURITY_PROTOCOL``, ``…_SASL_*`` and ``…_SSL_*`` reach all of them; the Faust
app of the detector gets the same settings as its ``broker_credentials``. Building a client
connects nothing: ``start()`` does.

A client is described by a :data:`Connection`: the settings, or a bare bootstrap string, which
means a plain-text broker (the tests' and ``make up``'s).
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from services.config import KafkaSettings

__all__ = [
    "Connection",
    "client_options",
    "faust_options",
    "new_admin",
    "new_consumer",
    "new_producer",
    "security_options",
    "ssl_context",
]

Connection = KafkaSettings | str


def security_options(settings: KafkaSettings) -> dict[str, Any]:
    """The security arguments of an aiokafka client (they are the same for all three kinds)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    return options


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context: the system's CAs or ``…_SSL_CAFILE``, a client certificate when
    ``…_SSL_CERTFILE``/``…_SSL_KEYFILE`` are set (mutual TLS). Reads those files."""
    key_password = settings.kafka_ssl_key_password
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
        password=key_password.get_secret_value() if key_password else None,
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def client_options(kafka: Connection) -> dict[str, Any]:
    """``bootstrap_servers`` and the security arguments."""
    if isinstance(kafka, str):
        return {"bootstrap_servers": kafka}
    return {"bootstrap_servers": kafka.kafka_bootstrap, **security_options(kafka)}


def faust_options(settings: KafkaSettings) -> dict[str, Any]:
    """The ``faust.App`` arguments that carry the same security (none for plain text): Faust
    hands its ``broker_credentials`` to each aiokafka client it builds."""
    import faust  # the detector's dependency; the other commands need not import it

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(context)}
    password = settings.kafka_sasl_password
    credentials = faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )
    return {"broker_credentials": credentials}


def new_consumer(kafka: Connection, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **client_options(kafka), **options)


def new_producer(kafka: Connection, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**client_options(kafka), **options)


def new_admin(kafka: Connection, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(kafka), **options)
