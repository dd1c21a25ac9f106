"""The migrated schema behaves the same on SQLite and PostgreSQL.

The projector relies on these properties, so they are checked on both backends: JSON payloads and
timezone-aware UTC times round-trip, a second row with the same `event_id` is rejected (the basis
of idempotent projection), composite keys hold, and a consumed position can be upserted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, StatementError

from services.store import make_engine
from services.store.migrate import upgrade
from services.store.models import cdr_events, consumed_positions, participants

CEST = timezone(timedelta(hours=2))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database migrated to head. PostgreSQL is shared by the session: tests use fresh ids."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _event_row(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event": "sessionCreated",
        "occurred_at": datetime(2026, 11, 25, 21, 30, 0, 123000, tzinfo=CEST),
        "timestamp_ms": 1_795_635_000_123,
        "session_id": "ses_A",
        "unique_session_id": "ses_A_1795635000123",
        "media_node_id": "media_i-0a1b",
        "payload": {"sessionId": "ses_A", "timestamp": 1_795_635_000_123, "nested": [1, None]},
        "source_topic": "mediacdr.cdr",
        "source_partition": 3,
        "source_offset": 42,
    }


def save_position(
    connection: Connection, consumer: str, topic: str, partition: int, next_offset: int
) -> None:
    """Insert or move a consumed position: `INSERT … ON CONFLICT DO UPDATE` on both backends.

    SQLite (3.24+) and PostgreSQL share the statement; only the construct comes from the dialect.
    """
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[connection.dialect.name]
    statement: Any = dialect.insert(consumed_positions).values(
        consumer=consumer,
        topic=topic,
        partition=partition,
        next_offset=next_offset,
        updated_at=datetime.now(UTC),
    )
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=["consumer", "topic", "partition"],
        set_={
            "next_offset": statement.excluded.next_offset,
            "updated_at": statement.excluded.updated_at,
        },
    )
    connection.execute(upsert)


def test_cdr_event_round_trips(engine: Engine) -> None:
    row = _event_row(_fresh("ce"))
    with engine.begin() as connection:
        connection.execute(cdr_events.insert().values(row))
    with engine.connect() as connection:
        stored = connection.execute(
            select(cdr_events).where(cdr_events.c.event_id == row["event_id"])
        ).one()
    assert stored.payload == row["payload"]
    assert stored.occurred_at == row["occurred_at"]
    assert stored.occurred_at.utcoffset() == timedelta(0)
    assert stored.timestamp_ms == row["timestamp_ms"]
    assert (stored.source_partition, stored.source_offset) == (3, 42)


def test_same_event_id_is_rejected(engine: Engine) -> None:
    row = _event_row(_fresh("ce"))
    with engine.begin() as connection:
        connection.execute(cdr_events.insert().values(row))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(cdr_events.insert().values({**row, "event": "sessionDestroyed"}))
    with engine.connect() as connection:
        events = connection.execute(
            select(cdr_events.c.event).where(cdr_events.c.event_id == row["event_id"])
        ).scalars()
        assert list(events) == ["sessionCreated"]


def test_naive_times_are_refused(engine: Engine) -> None:
    row = {**_event_row(_fresh("ce")), "occurred_at": datetime(2026, 11, 25, 21, 30)}
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as connection:
        connection.execute(cdr_events.insert().values(row))


def test_participant_key_is_session_and_connection(engine: Engine) -> None:
    session = _fresh("ses")
    joined = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    with engine.begin() as connection:
        for connection_id in ("con_1", "con_2"):
            connection.execute(
                participants.insert().values(
                    unique_session_id=session, connection_id=connection_id, joined_at=joined
                )
            )
        connection.execute(
            participants.insert().values(
                unique_session_id=_fresh("ses"), connection_id="con_1", joined_at=joined
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            participants.insert().values(unique_session_id=session, connection_id="con_1")
        )
    with engine.connect() as connection:
        rows = connection.execute(
            select(participants.c.connection_id, participants.c.joined_at)
            .where(participants.c.unique_session_id == session)
            .order_by(participants.c.connection_id)
        ).all()
    assert [tuple(r) for r in rows] == [("con_1", joined), ("con_2", joined)]


def test_consumed_position_upserts(engine: Engine) -> None:
    consumer = _fresh("projector")
    with engine.begin() as connection:
        save_position(connection, consumer, "mediacdr.cdr", 0, 10)
        save_position(connection, consumer, "mediacdr.cdr", 1, 5)
    with engine.begin() as connection:
        save_position(connection, consumer, "mediacdr.cdr", 0, 11)
    with engine.connect() as connection:
        positions = connection.execute(
            select(consumed_positions.c.partition, consumed_positions.c.next_offset)
            .where(consumed_positions.c.consumer == consumer)
            .order_by(consumed_positions.c.partition)
        ).all()
    assert [tuple(p) for p in positions] == [(0, 11), (1, 5)]


def test_position_and_rows_commit_together(engine: Engine) -> None:
    consumer, row = _fresh("projector"), _event_row(_fresh("ce"))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(cdr_events.insert().values(row))
        save_position(connection, consumer, "mediacdr.cdr", 3, 43)
        connection.execute(cdr_events.insert().values(row))  # redelivered: whole batch rolls back
    event = select(cdr_events).where(cdr_events.c.event_id == row["event_id"])
    position = select(consumed_positions).where(consumed_positions.c.consumer == consumer)
    with engine.connect() as connection:
        assert connection.execute(event).all() == []
        assert connection.execute(position).all() == []
