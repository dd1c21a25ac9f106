"""Settings, read once from the environment (prefix ``MEDIACDR_``) in each entry point.

One frozen object per service, passed down; nothing connects at import time. Every name and
default here is part of the contract (README's configuration table lists them).
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ApiSettings",
    "DatabaseSettings",
    "DetectorSettings",
    "KafkaSettings",
    "MetricsSettings",
    "ProjectorSettings",
    "Topics",
    "WebhookSettings",
]


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDIACDR_", frozen=True, extra="ignore")


class Topics(_Base):
    """The six contract topics (CONTRACT §2)."""

    topic_liveness: str = "mediacdr.liveness"
    topic_sessions: str = "mediacdr.sessions"
    topic_cdr: str = "mediacdr.cdr"
    topic_nodes: str = "mediacdr.nodes"
    topic_notifications: str = "mediacdr.notifications"
    topic_deadletter: str = "mediacdr.deadletter"


class KafkaSettings(Topics):
    """What every Kafka-facing service needs."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    partitions: int = Field(default=12, ge=1)
    replication_factor: int = Field(default=1, ge=1)


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


class DatabaseSettings(_Base):
    """The SQL projection store (CONTRACT §12)."""

    database_url: str = "sqlite:///var/mediacdr.db"
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)


class ProjectorSettings(KafkaSettings, DatabaseSettings, MetricsSettings):
    """The projector: CDR and node facts → SQL (CONTRACT §10, §12)."""

    projector_group_id: str = "mediacdr-projector"
    projector_batch_size: int = Field(default=5000, ge=1)
    projector_batch_wait_ms: int = Field(default=200, ge=0)
    recovery_window_s: int = Field(default=300, ge=0)


class WebhookSettings(KafkaSettings, DatabaseSettings, MetricsSettings):
    """The webhooks service (CONTRACT §13); the endpoint settings mirror OpenVidu's."""

    webhook_endpoint: str | None = None
    webhook_headers: list[str] = Field(default_factory=list)
    webhook_events: list[str] = Field(default_factory=list)  # empty = every CDR event
    webhook_secret: str | None = None
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


class ApiSettings(KafkaSettings, DatabaseSettings):
    """The HTTP API, ingest and dashboard (CONTRACT §14)."""

    api_addr: str = "127.0.0.1:8080"
    api_secret: str | None = None
    ingest_default_node: str | None = None
    #: Ingest refuses bodies stamped further than this from the server clock.
    ingest_max_skew_s: int = Field(default=86_400, ge=1)

    @field_validator("api_secret", "ingest_default_node", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
