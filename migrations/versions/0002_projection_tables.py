"""Projection tables: CDR events, nodes, sessions, participants, recordings, incidents,
recoveries and the projector's consumed positions (CONTRACT §12).

Names follow services.store.models.NAMING_CONVENTION, written out so this revision does not
change if the convention ever does. Times are plain ``DateTime(timezone=True)``: the models'
``UtcDateTime`` only converts values in Python and emits the same DDL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = 255
INDEXES = {
    "cdr_events": ["session_id", "unique_session_id", "media_node_id", "occurred_at", "event"],
    "sessions": ["session_id", "media_node_id", "created_at"],
    "node_incidents": ["media_node_id"],
    "session_recoveries": ["session_id"],
}
TABLES = [
    "cdr_events",
    "media_nodes",
    "sessions",
    "participants",
    "recordings",
    "node_incidents",
    "session_recoveries",
    "consumed_positions",
]


def _at(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.String(ID), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "cdr_events",
        _id("event_id", nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        _at("occurred_at", nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        _id("session_id"),
        _id("unique_session_id"),
        _id("connection_id"),
        _id("media_node_id"),
        _id("incident_id"),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        _id("source_topic"),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_cdr_events"),
    )
    op.create_table(
        "media_nodes",
        _id("id", nullable=False),
        _id("environment_id"),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("uri", sa.Text(), nullable=True),
        _id("cluster_id"),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("connected", sa.Boolean(), server_default=sa.true(), nullable=False),
        _at("disconnected_at"),
        _at("crashed_at"),
        _at("recovered_at"),
        _at("removed_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_media_nodes"),
    )
    op.create_table(
        "sessions",
        _id("unique_session_id", nullable=False),
        _id("session_id", nullable=False),
        _id("media_node_id"),
        _at("created_at"),
        _at("destroyed_at"),
        sa.Column("duration_s", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        _at("media_lost_at"),
        sa.PrimaryKeyConstraint("unique_session_id", name="pk_sessions"),
    )
    op.create_table(
        "participants",
        _id("unique_session_id", nullable=False),
        _id("connection_id", nullable=False),
        _at("joined_at"),
        _at("left_at"),
        sa.Column("duration_s", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("platform", sa.Text(), nullable=True),
        sa.Column("client_data", sa.Text(), nullable=True),
        sa.Column("server_data", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("unique_session_id", "connection_id", name="pk_participants"),
    )
    op.create_table(
        "recordings",
        _id("unique_session_id", nullable=False),
        _id("id", nullable=False),
        _id("media_node_id"),
        sa.Column("status", sa.String(32), nullable=True),
        _at("started_at"),
        _at("stopped_at"),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("unique_session_id", "id", name="pk_recordings"),
    )
    op.create_table(
        "node_incidents",
        _id("incident_id", nullable=False),
        _id("media_node_id", nullable=False),
        _at("disconnected_at", nullable=False),
        _at("deadline_at"),
        sa.Column("cause", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), server_default="pending", nullable=False),
        _at("reconnected_at"),
        _at("crashed_at"),
        _at("recovered_at"),
        _at("removed_at"),
        sa.Column("sessions_closed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("participants_evicted", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("incident_id", name="pk_node_incidents"),
    )
    op.create_table(
        "session_recoveries",
        _id("old_unique_session_id", nullable=False),
        _id("new_unique_session_id", nullable=False),
        _id("session_id", nullable=False),
        _id("from_node"),
        _id("to_node"),
        _at("crashed_at"),
        _at("recovered_at"),
        sa.Column("time_to_recover_ms", sa.BigInteger(), nullable=True),
        sa.Column("participants_before", sa.Integer(), nullable=True),
        sa.Column("participants_returned", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("old_unique_session_id", name="pk_session_recoveries"),
    )
    op.create_table(
        "consumed_positions",
        _id("consumer", nullable=False),
        _id("topic", nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        _at("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("consumer", "topic", "partition", name="pk_consumed_positions"),
    )
    for table, columns in INDEXES.items():
        for column in columns:
            op.create_index(f"ix_{table}_{column}", table, [column], unique=False)


def downgrade() -> None:
    for table, columns in INDEXES.items():
        for column in columns:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
    for table in reversed(TABLES):
        op.drop_table(table)
