"""Consumed positions kept in SQL, written in the same transaction as what was consumed.

Every Kafka consumer of mediacdr that writes SQL (the projector, the webhooks service) stores the
next offset to read per partition here, under its own consumer name, and seeks to it when it is
assigned a partition. Positions only move forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, case, select
from sqlalchemy.dialects import postgresql, sqlite

from services.store import models

__all__ = ["Position", "advance", "dialect_insert", "read"]

Position = tuple[str, int]  # (topic, partition)


def dialect_insert(dialect: str, table: Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support: PostgreSQL and SQLite only."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"mediacdr's store supports SQLite and PostgreSQL, not {dialect}")


def read(engine: Engine, consumer: str) -> dict[Position, int]:
    t = models.consumed_positions
    query = select(t.c.topic, t.c.partition, t.c.next_offset).where(t.c.consumer == consumer)
    with engine.connect() as conn:
        return {(topic, part): offset for topic, part, offset in conn.execute(query)}


def advance(conn: Connection, consumer: str, positions: Mapping[Position, int]) -> None:
    if not positions:
        return
    t = models.consumed_positions
    statement = dialect_insert(conn.dialect.name, t)
    new = statement.excluded.next_offset
    statement = statement.on_conflict_do_update(
        index_elements=[t.c.consumer, t.c.topic, t.c.partition],
        set_={
            "next_offset": case((new > t.c.next_offset, new), else_=t.c.next_offset),
            "updated_at": statement.excluded.updated_at,
        },
    )
    now = datetime.now(UTC)
    rows = [
        {
            "consumer": consumer,
            "topic": topic,
            "partition": part,
            "next_offset": offset,
            "updated_at": now,
        }
        for (topic, part), offset in sorted(positions.items())
    ]
    conn.execute(statement, rows)
