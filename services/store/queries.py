"""Read queries on the projection, for the CLI and the API (the SQL people write is in
docs/SQL.md). Plain dictionaries out, times as aware UTC datetimes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, func, select, tuple_

from services.store import models

__all__ = ["CdrCursor", "cdr", "incidents", "node", "nodes", "recoveries", "sessions"]

Row = dict[str, Any]


def _rows(engine: Engine, query: Select[Any]) -> list[Row]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def nodes(engine: Engine) -> list[Row]:
    """Every node with its state and the number of sessions live on it."""
    n, s = models.media_nodes, models.sessions
    live = (
        select(s.c.media_node_id, func.count().label("live_sessions"))
        .where(s.c.destroyed_at.is_(None))
        .group_by(s.c.media_node_id)
        .subquery()
    )
    query = (
        select(
            *[c for c in n.c if not c.name.endswith("_order")],
            func.coalesce(live.c.live_sessions, 0).label("live_sessions"),
        )
        .outerjoin(live, live.c.media_node_id == n.c.id)
        .order_by(n.c.id)
    )
    return _rows(engine, query)


def sessions(
    engine: Engine,
    *,
    active: bool | None = None,
    node: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[Row]:
    """Sessions, newest first; ``since``/``until`` bound the creation time."""
    s = models.sessions
    query = select(s).order_by(s.c.created_at.desc(), s.c.unique_session_id).limit(limit)
    if active is not None:
        query = query.where(s.c.destroyed_at.is_(None) if active else s.c.destroyed_at.is_not(None))
    if node is not None:
        query = query.where(s.c.media_node_id == node)
    if since is not None:
        query = query.where(s.c.created_at >= since)
    if until is not None:
        query = query.where(s.c.created_at < until)
    return _rows(engine, query)


def incidents(engine: Engine, *, node: str | None = None, limit: int = 100) -> list[Row]:
    """Incidents, latest disconnection first."""
    i = models.node_incidents
    columns = [c for c in i.c if not c.name.endswith("_order")]
    query = select(*columns).order_by(i.c.disconnected_at.desc(), i.c.incident_id).limit(limit)
    if node is not None:
        query = query.where(i.c.media_node_id == node)
    return _rows(engine, query)


def recoveries(engine: Engine, *, limit: int = 100) -> list[Row]:
    """Sessions closed by a crash, latest first, with their recovery when there was one."""
    r = models.session_recoveries
    query = select(r).order_by(r.c.crashed_at.desc(), r.c.old_unique_session_id).limit(limit)
    return _rows(engine, query)


def node(engine: Engine, node_id: str) -> Row | None:
    """One node with its live sessions and latest incidents; ``None`` when unknown."""
    found = [n for n in nodes(engine) if n["id"] == node_id]
    if not found:
        return None
    detail = found[0]
    detail["sessions"] = sessions(engine, active=True, node=node_id)
    detail["incidents"] = incidents(engine, node=node_id, limit=20)
    return detail


#: (timestamp_ms, partition, offset) of the last item of a page: where the next one starts.
CdrCursor = tuple[int, int, int]


def cdr(
    engine: Engine,
    *,
    event: str | None = None,
    session: str | None = None,
    node: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: CdrCursor | None = None,
    limit: int = 100,
) -> list[Row]:
    """CDR events in CDR order (timestamp, partition, offset), filtered, after ``after``."""
    c = models.cdr_events
    order = (c.c.timestamp_ms, c.c.source_partition, c.c.source_offset)
    query = select(c).order_by(*order).limit(limit)
    for column, value in (
        (c.c.event, event),
        (c.c.session_id, session),
        (c.c.media_node_id, node),
        (c.c.reason, reason),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(c.c.occurred_at >= since)
    if until is not None:
        query = query.where(c.c.occurred_at < until)
    if after is not None:
        query = query.where(tuple_(*order) > tuple_(*after))
    return _rows(engine, query)
