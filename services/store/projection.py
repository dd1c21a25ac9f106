"""Writing the projection: one transaction per batch, rows and consumed positions together.

``ProjectionStore.apply`` is the projector's whole effect on the database:
1. insert the batch's CDR events, skipping event ids already there (``ON CONFLICT DO NOTHING
   RETURNING``): only those inserted now contribute, which makes counters exact under redelivery;
2. fold every contribution per row in memory with the merge rules of ``services.core.projection``
   and upsert each table once, the same rules rendered as SQL (``ON CONFLICT DO UPDATE``), so
   concurrent projectors and any interleaving of partitions give the same rows (folding first
   also means one statement never meets a row twice, which PostgreSQL refuses);
3. link recoveries (CONTRACT §10), which needs the crashed incarnation: it is read back after
   step 2, so a crash and its re-creation in one batch link as well as across batches;
4. move the consumed positions forward.

Steps 1 and 2 write a batch's rows of a table with one statement. On PostgreSQL the rows go as
one JSON array that the server turns into rows (``INSERT … SELECT … FROM
jsonb_populate_recordset(…)``): one short statement and one parameter whatever the batch size,
encoded by ``json`` in C. A multi-row ``VALUES`` instead had psycopg parse some 14,000
placeholders per statement in Python, and arrays per column had it escape every element in
Python; either was about half the projector's time. SQLite runs the plain ``INSERT`` through the
driver's ``executemany``, a loop in C.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Result,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.dml import Insert

from services.core.projection import (
    TABLES,
    Add,
    First,
    Latest,
    Max,
    Min,
    ProjectedRecord,
    Row,
    TableSpec,
    utc,
)
from services.store import models
from services.store import positions as positions_store
from services.store.positions import Position, dialect_insert
from services.store.recoveries import relink

__all__ = ["PROJECTION_TABLES", "AppliedBatch", "Position", "ProjectionStore"]

PROJECTOR = "projector"

#: Every table the projector owns; ``rebuild`` empties these and nothing else.
PROJECTION_TABLES: tuple[Table, ...] = (
    models.cdr_events,
    models.sessions,
    models.participants,
    models.recordings,
    models.media_nodes,
    models.node_incidents,
    models.session_recoveries,
)


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    events: int  # CDR events new to the store
    duplicates: int  # CDR events already stored (redelivered)
    facts: int  # node facts applied


class ProjectionStore:
    """The projector's writes and the few reads it needs, on SQLite or PostgreSQL."""

    def __init__(
        self,
        engine: Engine,
        *,
        recovery_window: timedelta = timedelta(seconds=300),
        consumer: str = PROJECTOR,
    ) -> None:
        self.engine = engine
        self.recovery_window = recovery_window
        self.consumer = consumer
        dialect = engine.dialect.name
        self._upserts = {name: _upsert(dialect, spec) for name, spec in TABLES.items()}
        self._insert_event = _insert_event(dialect)

    # -- reads -------------------------------------------------------------------------------

    def positions(self) -> dict[Position, int]:
        """The next offset to read per (topic, partition), as committed with the rows."""
        return positions_store.read(self.engine, self.consumer)

    def is_empty(self) -> bool:
        with self.engine.connect() as conn:
            for table in PROJECTION_TABLES:
                if conn.execute(select(func.count()).select_from(table)).scalar_one():
                    return False
            positions = models.consumed_positions
            mine = positions.c.consumer == self.consumer
            return not conn.execute(select(func.count()).where(mine)).scalar_one()

    # -- writes ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Empty the projection (not the webhook tables) and forget the consumed positions."""
        with self.engine.begin() as conn:
            for table in PROJECTION_TABLES:
                conn.execute(delete(table))
            positions = models.consumed_positions
            conn.execute(delete(positions).where(positions.c.consumer == self.consumer))

    def apply(
        self, records: Sequence[ProjectedRecord], positions: Mapping[Position, int]
    ) -> AppliedBatch:
        """Project ``records`` and store ``positions`` (next offsets) in one transaction."""
        with self.engine.begin() as conn:
            events = [r for r in _unique(records) if r.source == "cdr"]
            fresh = self._insert_events(conn, events)
            applied = [r for r in _unique(records) if r.source == "nodes" or r.event_id in fresh]
            self._merge_rows(conn, applied)
            self._link_recoveries(conn, [r for r in applied if r.source == "cdr"])
            positions_store.advance(conn, self.consumer, positions)
        facts = len(records) - sum(1 for r in records if r.source == "cdr")
        return AppliedBatch(len(fresh), len(events) - len(fresh), facts)

    def _insert_events(self, conn: Connection, events: Sequence[ProjectedRecord]) -> set[str]:
        if not events:
            return set()
        rows = [_event_row(r) for r in events]
        return set(self._insert_event.execute(conn, rows).scalars().all())

    def _merge_rows(self, conn: Connection, records: Iterable[ProjectedRecord]) -> None:
        rows: dict[str, dict[tuple[Any, ...], Row]] = {name: {} for name in TABLES}
        for record in records:
            for c in record.rows():
                spec, table_rows = TABLES[c.table], rows[c.table]
                current = table_rows.get(c.key)
                if current is None:
                    table_rows[c.key] = spec.merge(spec.empty_row(c.key), c.values)
                elif c.values:  # most records only name their node: nothing to merge
                    table_rows[c.key] = spec.merge(current, c.values)
        for name, table_rows in rows.items():
            if table_rows:
                ordered = [table_rows[key] for key in sorted(table_rows, key=_sort_key)]
                self._upserts[name].execute(conn, ordered)

    def _link_recoveries(self, conn: Connection, records: Sequence[ProjectedRecord]) -> None:
        """Recompute the recovery links of the sessions the batch touched
        (``services/store/recoveries.py``): the links do not depend on the read order."""
        touched = {
            str(r.body["sessionId"])
            for r in records
            if r.event in _RECOVERY_INPUTS and r.body.get("sessionId") is not None
        }
        relink(conn, touched, self.recovery_window)


#: what a recovery link is made of: creations, the crash's end of a session, returned people
_RECOVERY_INPUTS = frozenset({"sessionCreated", "sessionDestroyed", "participantJoined"})


def _unique(records: Iterable[ProjectedRecord]) -> list[ProjectedRecord]:
    seen: set[str] = set()
    out = []
    for r in records:
        if r.source == "nodes" or r.event_id not in seen:
            seen.add(r.event_id)
            out.append(r)
    return out


def _event_row(r: ProjectedRecord) -> dict[str, Any]:
    b = r.body
    return {
        "event_id": r.event_id,
        "event": r.event,
        "occurred_at": _at(r.timestamp),
        "timestamp_ms": r.timestamp,
        "session_id": b.get("sessionId"),
        "unique_session_id": b.get("uniqueSessionId"),
        "connection_id": b.get("connectionId") or b.get("participantId"),
        "media_node_id": r.media_node_id,
        "incident_id": r.incident_id,
        "reason": b.get("reason"),
        "payload": b,
        "source_topic": r.topic,
        "source_partition": r.partition,
        "source_offset": r.offset,
    }


def _at(timestamp_ms: int) -> datetime:
    at = utc(timestamp_ms)
    assert at is not None
    return at


def _sort_key(key: tuple[Any, ...]) -> tuple[str, ...]:
    """Rows are written in key order, so concurrent writers lock rows in the same order."""
    return tuple(str(part) for part in key)


@dataclass(frozen=True)
class _BulkInsert:
    """One ``INSERT … ON CONFLICT`` of many rows (dicts holding every column in ``columns``):
    on PostgreSQL the rows go as one JSON array parameter, elsewhere by ``executemany``."""

    statement: Insert
    columns: tuple[str, ...]
    as_json: bool

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> Result[Any]:
        if self.as_json:
            return conn.execute(self.statement, {_ROWS: _json_rows(rows)})
        return conn.execute(self.statement, list(rows))


_ROWS = "rows"


def _rows_insert(dialect: str, table: Table, columns: Sequence[str]) -> Insert:
    """``INSERT INTO table (columns)``; on PostgreSQL ``… SELECT … FROM
    jsonb_populate_recordset(NULL::table, :rows)``: the server turns the JSON array into rows of
    the table's own column types, and the statement stays short whatever the number of rows."""
    statement = dialect_insert(dialect, table)
    if dialect != "postgresql":
        return statement  # type: ignore[no-any-return]
    rows = func.jsonb_populate_recordset(
        literal_column(f"NULL::{table.name}"), cast(bindparam(_ROWS), JSONB)
    ).table_valued(*columns)
    return statement.from_select(list(columns), select(*rows.c))  # type: ignore[no-any-return]


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(rows, default=_json_value, ensure_ascii=False, separators=(",", ":"))


def _json_value(value: object) -> str:
    """Times as ISO 8601 with their offset; like ``UtcDateTime``, naive ones are refused."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: times in the store are timezone-aware")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


def _insert_event(dialect: str) -> _BulkInsert:
    """Insert CDR events, skipping ids already stored; returns the ids inserted now."""
    t = models.cdr_events
    columns = tuple(c.name for c in t.c)
    statement = (
        _rows_insert(dialect, t, columns)
        .on_conflict_do_nothing(index_elements=[t.c.event_id])  # type: ignore[attr-defined]
        .returning(t.c.event_id)
    )
    return _BulkInsert(statement, columns, dialect == "postgresql")


def _upsert(dialect: str, spec: TableSpec) -> _BulkInsert:
    """``INSERT … ON CONFLICT DO UPDATE`` applying ``spec``'s merge rule to every column."""
    table = models.metadata.tables[spec.name]
    columns = (*spec.key, *spec.columns)
    statement = _rows_insert(dialect, table, columns)
    new = statement.excluded  # type: ignore[attr-defined]
    merged: dict[str, ColumnElement[Any]] = {}
    for name, policy in spec.columns.items():
        old = table.c[name]
        if isinstance(policy, First):
            merged[name] = func.coalesce(old, new[name])
        elif isinstance(policy, Max):
            merged[name] = _greatest(old, new[name])
        elif isinstance(policy, Min):
            merged[name] = case((old.is_(None), new[name]), (new[name] < old, new[name]), else_=old)
        elif isinstance(policy, Add):
            merged[name] = old + new[name]
        elif isinstance(policy, Latest):
            new_order, old_order = new[policy.order], table.c[policy.order]
            newer = and_(new_order.is_not(None), or_(old_order.is_(None), new_order >= old_order))
            merged[name] = case((newer, new[name]), else_=old)
    upsert = statement.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=[table.c[k] for k in spec.key], set_=merged
    )
    return _BulkInsert(upsert, columns, dialect == "postgresql")


def _greatest(old: ColumnElement[Any], new: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((old.is_(None), new), (new > old, new), else_=old)
