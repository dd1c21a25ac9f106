"""Settings, read once from the environment (prefix ``MEDIACDR_``) in each entry point.

One frozen object per service, passed down; nothing connects at import time. Every name and
default here is part of the contract (README's configuration table lists them).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ApiSettings",
    "DatabaseSettings",
    "DetectorSettings",
    "KafkaSettings",
    "MetricsSettings",
    "ProjectorSettings",
    "Topics",
    "WebhookPolicySettings",
    "WebhookSettings",
]


class _Base(BaseSettings):
    # hide_input_in_errors: a validation error would otherwise quote what it read from the
    # environment, secrets included
    model_config = SettingsConfigDict(
        env_prefix="MEDIACDR_", frozen=True, extra="ignore", hide_input_in_errors=True
    )


class Topics(_Base):
    """The six contract topics (CONTRACT §2)."""

    topic_liveness: str = "mediacdr.liveness"
    topic_sessions: str = "mediacdr.sessions"
    topic_cdr: str = "mediacdr.cdr"
    topic_nodes: str = "mediacdr.nodes"
    topic_notifications: str = "mediacdr.notifications"
    topic_deadletter: str = "mediacdr.deadletter"


class KafkaSettings(Topics):
    """What every Kafka-facing service needs, including how to authenticate to the broker.

    ``services/kafka_clients.py`` turns the security settings into the arguments of every
    aiokafka client and of the Faust app (docs/RELIABILITY.md, Security).
    """

    kafka_bootstrap: str = "127.0.0.1:9092"
    partitions: int = Field(default=12, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "kafka_ssl_key_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _security_is_consistent(self) -> Self:
        """A SASL or TLS setting the protocol would ignore is a mistake: refuse it rather than
        connect in plain text."""
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        if sasl and (self.kafka_sasl_username is None or self.kafka_sasl_password is None):
            raise ValueError(
                f"MEDIACDR_KAFKA_SECURITY_PROTOCOL={protocol} needs MEDIACDR_KAFKA_SASL_USERNAME "
                "and MEDIACDR_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ValueError(
                "MEDIACDR_KAFKA_SASL_* is set but MEDIACDR_KAFKA_SECURITY_PROTOCOL is "
                f"{protocol}, not SASL_PLAINTEXT or SASL_SSL"
            )
        tls_files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if protocol not in ("SSL", "SASL_SSL") and any(tls_files):
            raise ValueError(
                "MEDIACDR_KAFKA_SSL_* is set but MEDIACDR_KAFKA_SECURITY_PROTOCOL is "
                f"{protocol}, not SSL or SASL_SSL"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("MEDIACDR_KAFKA_SSL_CERTFILE and _SSL_KEYFILE go together")
        return self


class MetricsSettings(_Base):
    """Where a service serves ``/health`` and ``/metrics`` (CONTRACT §14); empty = not at all."""

    metrics_addr: str = ""


class DetectorSettings(KafkaSettings, MetricsSettings):
    """The crash detector (CONTRACT §5)."""

    grace_ms: int = Field(default=3000, ge=0)
    allowed_lateness_ms: int = Field(default=100, ge=0)
    heartbeat_timeout_ms: int = Field(default=0, ge=0)
    reconnection_timeout_s: int = Field(default=-1, ge=-1)
    detector_data_dir: str = "var/detector"
    detector_app_id: str = "mediacdr"
    detector_standby_replicas: int = Field(default=1, ge=0)
    #: a worker that stops heartbeating is out of the group after this long, and its nodes'
    #: pending deadlines fire on another worker: the failover time (docs/OPERATIONS.md)
    detector_session_timeout_s: float = Field(default=10.0, ge=1.0)
    detector_heartbeat_interval_s: float = Field(default=1.0, gt=0)
    #: after the broker was unreachable, reaching the end offsets does not vouch for the wall
    #: clock for this long: producers are still delivering what they held (docs/DETECTOR.md)
    outage_settle_ms: int = Field(default=10_000, ge=0)
    #: A mass disconnection: more than this share of the running nodes disconnect within one
    #: grace window (likely the observer or the network); 1 = never.
    mass_disconnect_share: float = Field(default=0.5, ge=0, le=1)
    #: … judged only with at least this many running nodes (one of two is no mass).
    mass_disconnect_min_nodes: int = Field(default=4, ge=1)


class DatabaseSettings(_Base):
    """The SQL projection store (CONTRACT §12)."""

    #: repr=False: it may hold a password
    database_url: str = Field(default="sqlite:///var/mediacdr.db", repr=False)
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)


class ProjectorSettings(KafkaSettings, DatabaseSettings, MetricsSettings):
    """The projector: CDR and node facts → SQL (CONTRACT §10, §12)."""

    projector_group_id: str = "mediacdr-projector"
    projector_batch_size: int = Field(default=5000, ge=1)
    projector_batch_wait_ms: int = Field(default=200, ge=0)
    recovery_window_s: int = Field(default=300, ge=0)


class WebhookPolicySettings(_Base):
    """Which webhook URLs a subscription may have; checked by every path that creates one (the
    API, the CLI, ``MEDIACDR_WEBHOOK_ENDPOINT``). http(s) only, always."""

    #: false: refuse loopback, private, link-local and reserved addresses (as given, or as the
    #: host name resolves when the subscription is created).
    webhook_allow_private: bool = True


class WebhookSettings(KafkaSettings, DatabaseSettings, MetricsSettings, WebhookPolicySettings):
    """The webhooks service (CONTRACT §13); the endpoint settings mirror OpenVidu's."""

    webhook_endpoint: str | None = None
    webhook_headers: list[str] = Field(default_factory=list, repr=False)  # may hold tokens
    webhook_events: list[str] = Field(default_factory=list)  # empty = every CDR event
    webhook_secret: SecretStr | None = None
    webhook_group_id: str = "mediacdr-webhooks"
    webhook_concurrency: int = Field(default=64, ge=1)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    #: Delays before attempts 1, 2, …: 0 s, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        min_length=1,
    )
    webhook_jitter: float = Field(default=0.2, ge=0, le=1)
    webhook_poll_ms: int = Field(default=250, ge=10)
    webhook_batch_size: int = Field(default=2000, ge=1)

    @field_validator("webhook_endpoint", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``MEDIACDR_WEBHOOK_ENDPOINT=`` (as compose files write it) means unset."""
        return None if value == "" else value


class ApiSettings(KafkaSettings, DatabaseSettings, WebhookPolicySettings):
    """The HTTP API, ingest and dashboard (CONTRACT §14)."""

    api_addr: str = "127.0.0.1:8080"
    api_secret: SecretStr | None = None
    ingest_default_node: str | None = None
    #: Ingest refuses bodies stamped further than this from the server clock.
    ingest_max_skew_s: int = Field(default=86_400, ge=1)

    @field_validator("api_secret", "ingest_default_node", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
