"""Table definitions. Alembic's autogenerate compares migrations/ against this metadata.

These are the tables people query (CONTRACT §12). Every time is timezone-aware and comes back in
UTC on every backend; `payload` is JSON (JSONB on PostgreSQL). `cdr_events.event_id` is the
CloudEvents `ce_id`: its primary key is what makes the projector idempotent, and
`consumed_positions` lets it store where it is in the same transaction as the rows it wrote.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    true,
)
from sqlalchemy.dialects import postgresql

__all__ = [
    "NAMING_CONVENTION",
    "UtcDateTime",
    "cdr_events",
    "consumed_positions",
    "media_nodes",
    "metadata",
    "node_incidents",
    "participants",
    "recordings",
    "session_recoveries",
    "sessions",
    "webhook_deliveries",
    "webhook_subscriptions",
]

#: Constraint names are explicit, so migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that only accepts aware values and always returns UTC.

    PostgreSQL keeps the offset itself; SQLite has no timestamp type, so values are stored as UTC
    and marked UTC again on the way out. Callers never see a naive datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: times in the store are timezone-aware")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: The JSON body of an event: portable JSON, JSONB where PostgreSQL can index it.
Payload = JSON().with_variant(postgresql.JSONB(), "postgresql")

_ID = 255  # ids come from OpenVidu and ce_id (UUIDs, node ids, session ids): short strings


def _at(name: str, **kwargs: Any) -> Column[datetime]:
    return Column(name, UtcDateTime(), **kwargs)


cdr_events = Table(
    "cdr_events",
    metadata,
    Column("event_id", String(_ID), primary_key=True),
    Column("event", String(64), nullable=False),
    _at("occurred_at", nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("session_id", String(_ID)),
    Column("unique_session_id", String(_ID)),
    Column("connection_id", String(_ID)),
    Column("media_node_id", String(_ID)),
    Column("incident_id", String(_ID)),
    Column("reason", String(64)),
    Column("payload", Payload, nullable=False),
    Column("source_topic", String(_ID)),
    Column("source_partition", Integer),
    Column("source_offset", BigInteger),
    Index(None, "session_id"),
    Index(None, "unique_session_id"),
    Index(None, "media_node_id"),
    Index(None, "occurred_at"),
    Index(None, "event"),
)

media_nodes = Table(
    "media_nodes",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("environment_id", String(_ID)),
    Column("ip", String(64)),
    Column("uri", Text),
    Column("cluster_id", String(_ID)),
    Column("status", String(32)),
    Column("connected", Boolean, nullable=False, server_default=true()),
    _at("disconnected_at"),
    _at("crashed_at"),
    _at("recovered_at"),
    _at("removed_at"),
    # Latest-wins order keys (timestamp_ms * 16 + rank) of the description, status and link.
    Column("described_order", BigInteger),
    Column("status_order", BigInteger),
    Column("link_order", BigInteger),
)

sessions = Table(
    "sessions",
    metadata,
    Column("unique_session_id", String(_ID), primary_key=True),
    Column("session_id", String(_ID), nullable=False),
    Column("media_node_id", String(_ID)),
    _at("created_at"),
    _at("destroyed_at"),
    Column("duration_s", Integer),
    Column("reason", String(64)),
    _at("media_lost_at"),
    Column("incident_id", String(_ID)),
    Index(None, "session_id"),
    Index(None, "media_node_id"),
    Index(None, "created_at"),
)

participants = Table(
    "participants",
    metadata,
    Column("unique_session_id", String(_ID), nullable=False),
    Column("connection_id", String(_ID), nullable=False),
    Column("session_id", String(_ID)),
    _at("joined_at"),
    _at("left_at"),
    Column("duration_s", Integer),
    Column("reason", String(64)),
    Column("location", Text),
    Column("ip", String(64)),
    Column("platform", Text),
    Column("client_data", Text),
    Column("server_data", Text),
    # The key's leading column serves "the participants of a session"; no second index.
    PrimaryKeyConstraint("unique_session_id", "connection_id"),
)

recordings = Table(
    "recordings",
    metadata,
    Column("unique_session_id", String(_ID), nullable=False),
    Column("id", String(_ID), nullable=False),
    Column("session_id", String(_ID)),
    Column("media_node_id", String(_ID)),
    Column("name", Text),
    Column("output_mode", String(32)),
    Column("status", String(32)),
    _at("started_at"),
    _at("stopped_at"),
    Column("reason", String(64)),
    Column("duration_s", Float),
    Column("size_bytes", BigInteger),
    Column("status_order", BigInteger),
    PrimaryKeyConstraint("unique_session_id", "id"),
)

node_incidents = Table(
    "node_incidents",
    metadata,
    Column("incident_id", String(_ID), primary_key=True),
    Column("media_node_id", String(_ID), nullable=False),
    _at("disconnected_at", nullable=False),
    _at("deadline_at"),
    Column("cause", String(64)),
    Column("outcome", String(16), nullable=False, server_default="pending"),
    Column("outcome_order", Integer),
    _at("decided_at"),  # wall clock of the crash decision (the ce_decidedat header)
    _at("reconnected_at"),
    _at("crashed_at"),
    _at("recovered_at"),
    _at("removed_at"),
    Column("sessions_closed", Integer, nullable=False, server_default="0"),
    Column("participants_evicted", Integer, nullable=False, server_default="0"),
    Column("recordings_stopped", Integer, nullable=False, server_default="0"),
    Column("broadcasts_stopped", Integer, nullable=False, server_default="0"),
    Index(None, "media_node_id"),
)

session_recoveries = Table(
    "session_recoveries",
    metadata,
    Column("old_unique_session_id", String(_ID), primary_key=True),
    Column("session_id", String(_ID), nullable=False),
    Column("from_node", String(_ID)),
    Column("incident_id", String(_ID)),
    _at("crashed_at"),
    Column("participants_before", Integer, nullable=False, server_default="0"),
    # Set when a new incarnation is created within the recovery window; NULL until then.
    Column("new_unique_session_id", String(_ID)),
    Column("to_node", String(_ID)),
    _at("recovered_at"),
    Column("time_to_recover_ms", BigInteger),
    Column("participants_returned", Integer, nullable=False, server_default="0"),
    Index(None, "session_id"),
    Index(None, "new_unique_session_id"),
)

consumed_positions = Table(
    "consumed_positions",
    metadata,
    Column("consumer", String(_ID), nullable=False),
    Column("topic", String(_ID), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    _at("updated_at", nullable=False),
    PrimaryKeyConstraint("consumer", "topic", "partition"),
)


# -- webhooks (CONTRACT §13): subscriptions and the delivery outbox ------------------------------

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    # The Standard Webhooks secret (whsec_…) the service signs with; shown once, never logged.
    Column("secret", Text),
    Column("headers", JSON, nullable=False),  # ["Name: Value", …]
    Column("events", JSON),  # event names; NULL = every CDR event
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("disabled_reason", Text),
    _at("created_at", nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column(
        "subscription_id",
        String(64),
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", String(_ID), nullable=False),  # ce_id = webhook-id
    Column("event", String(64), nullable=False),
    Column("record_key", String(_ID), nullable=False),  # session or node id: the order unit
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),  # CDR order within the key
    _at("occurred_at", nullable=False),
    Column("body", LargeBinary, nullable=False),  # the CDR value, byte for byte
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    _at("next_attempt_at"),
    _at("last_attempt_at"),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    _at("delivered_at"),
    PrimaryKeyConstraint("subscription_id", "event_id"),
    Index(None, "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_key_order", "subscription_id", "record_key", "source_offset"),
    Index(None, "occurred_at"),
)
