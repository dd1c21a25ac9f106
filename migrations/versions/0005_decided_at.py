"""node_incidents.decided_at: when the detector decided a crash (wall clock), so the decision
delay (decided_at − deadline_at) can be shown and queried.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("node_incidents") as t:
        t.add_column(sa.Column("decided_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("node_incidents") as t:
        t.drop_column("decided_at")
