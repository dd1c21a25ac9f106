"""Columns the projector needs: latest-wins order keys, crash impact counters, recording details,
and recoveries recorded from the crash on (the new incarnation is NULL until it is created).

Batch mode, so SQLite (which cannot alter a column in place) gets the same schema by copying the
table; PostgreSQL alters in place.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = 255


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=False, server_default="0")


def upgrade() -> None:
    with op.batch_alter_table("media_nodes") as t:
        t.drop_column("updated_at")
        t.add_column(sa.Column("described_order", sa.BigInteger()))
        t.add_column(sa.Column("status_order", sa.BigInteger()))
        t.add_column(sa.Column("link_order", sa.BigInteger()))
    with op.batch_alter_table("sessions") as t:
        t.add_column(sa.Column("incident_id", sa.String(ID)))
    with op.batch_alter_table("participants") as t:
        t.add_column(sa.Column("session_id", sa.String(ID)))
    with op.batch_alter_table("recordings") as t:
        t.add_column(sa.Column("session_id", sa.String(ID)))
        t.add_column(sa.Column("name", sa.Text()))
        t.add_column(sa.Column("output_mode", sa.String(32)))
        t.add_column(sa.Column("duration_s", sa.Float()))
        t.add_column(sa.Column("size_bytes", sa.BigInteger()))
        t.add_column(sa.Column("status_order", sa.BigInteger()))
    with op.batch_alter_table("node_incidents") as t:
        t.add_column(sa.Column("outcome_order", sa.Integer()))
        t.add_column(_counter("recordings_stopped"))
        t.add_column(_counter("broadcasts_stopped"))
    for name in ("participants_before", "participants_returned"):
        op.execute(f"UPDATE session_recoveries SET {name} = 0 WHERE {name} IS NULL")
    with op.batch_alter_table("session_recoveries") as t:
        t.add_column(sa.Column("incident_id", sa.String(ID)))
        t.alter_column("new_unique_session_id", existing_type=sa.String(ID), nullable=True)
        for name in ("participants_before", "participants_returned"):
            t.alter_column(
                name, existing_type=sa.Integer(), nullable=False, server_default="0"
            )
        t.create_index(
            "ix_session_recoveries_new_unique_session_id", ["new_unique_session_id"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM session_recoveries WHERE new_unique_session_id IS NULL")
    with op.batch_alter_table("session_recoveries") as t:
        t.drop_index("ix_session_recoveries_new_unique_session_id")
        for name in ("participants_before", "participants_returned"):
            t.alter_column(name, existing_type=sa.Integer(), nullable=True, server_default=None)
        t.alter_column("new_unique_session_id", existing_type=sa.String(ID), nullable=False)
        t.drop_column("incident_id")
    with op.batch_alter_table("node_incidents") as t:
        t.drop_column("broadcasts_stopped")
        t.drop_column("recordings_stopped")
        t.drop_column("outcome_order")
    with op.batch_alter_table("recordings") as t:
        for name in ("status_order", "size_bytes", "duration_s", "output_mode", "name"):
            t.drop_column(name)
        t.drop_column("session_id")
    with op.batch_alter_table("participants") as t:
        t.drop_column("session_id")
    with op.batch_alter_table("sessions") as t:
        t.drop_column("incident_id")
    with op.batch_alter_table("media_nodes") as t:
        t.drop_column("link_order")
        t.drop_column("status_order")
        t.drop_column("described_order")
        t.add_column(sa.Column("updated_at", sa.DateTime(timezone=True)))
