"""Recovery links (CONTRACT §10, §12), recomputed from the rows so that the CDR's read order
does not matter.

A ``sessionCreated`` recovers the crashed incarnation of the same session id that it follows
within the recovery window (``services.core.projection.link_recoveries``, a pure function of the
crashes and creations). The CDR does not hold them in event-time order: all incarnations share
the session id, hence the partition, but each is copied by the node agent of its own node, and
a crash's cascade is written only when the crashed node's deadline is decided. A detector
catching up on a backlog, or waiting for a node's liveness (D4), can copy a re-creation — even
the next incarnation's whole life — before it decides the crash before it.

So the links are not made once, when one side is read: every batch that touches a session id
that has a crash (a creation, a join, a crash's ``sessionDestroyed``) recomputes that session
id's links from every crash and creation projected so far, and the returned participants from
the joins projected so far, and writes what changed. Whatever the order and the batching, the
last batch leaves the links that one batch of everything would: the same rows live and in a
rebuild. All records of a session id are on one partition, so one projector owns them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, String, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from services.core.projection import (
    Candidate,
    Creation,
    Join,
    Link,
    link_recoveries,
    returned_participants,
)
from services.store import models

__all__ = ["relink"]

_t, _s, _p = models.session_recoveries, models.sessions, models.participants


def _among(
    conn: Connection, column: ColumnElement[str], values: Iterable[str]
) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:array)``, one parameter however many
    values (a batch names hundreds of sessions, and psycopg parses each placeholder in Python)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, sorted(values), type_=ARRAY(String)))
    return column.in_(values)


def relink(conn: Connection, session_ids: Iterable[str], window: timedelta) -> None:
    """Bring the links of ``session_ids`` (those with a crash) in line with the rows as they
    stand (the batch's rows already merged)."""
    session_ids = set(session_ids)
    if not session_ids:
        return
    crashes = conn.execute(
        select(
            _t.c.old_unique_session_id,
            _t.c.session_id,
            _t.c.crashed_at,
            _t.c.new_unique_session_id,
            _t.c.participants_returned,
        ).where(_among(conn, _t.c.session_id, session_ids), _t.c.crashed_at.is_not(None))
    ).all()
    if not crashes:
        return  # the usual case: these sessions never crashed
    creations = [
        Creation(*row)
        for row in conn.execute(
            select(
                _s.c.unique_session_id, _s.c.session_id, _s.c.media_node_id, _s.c.created_at
            ).where(
                _among(conn, _s.c.session_id, {c.session_id for c in crashes}),
                _s.c.created_at.is_not(None),
            )
        )
    ]
    candidates = [Candidate(c.old_unique_session_id, c.session_id, c.crashed_at) for c in crashes]
    links = {
        link.old_unique_session_id: link for link in link_recoveries(candidates, creations, window)
    }
    returned = _returned(
        conn, links.values(), {c.old_unique_session_id: c.crashed_at for c in crashes}, window
    )
    for crash in crashes:
        link = links.get(crash.old_unique_session_id)
        if link is None:
            if crash.new_unique_session_id is not None:  # a creation read later took it
                _write(conn, crash.old_unique_session_id, None, 0)
            continue
        count = returned.get(link.new_unique_session_id, 0)
        if (crash.new_unique_session_id, crash.participants_returned) != (
            link.new_unique_session_id,
            count,
        ):
            _write(conn, crash.old_unique_session_id, link, count)


def _returned(
    conn: Connection, links: Iterable[Link], crashed_at: dict[str, datetime], window: timedelta
) -> dict[str, int]:
    """Per new incarnation, its participants who joined within the window after the crash."""
    recovered = {
        link.new_unique_session_id: crashed_at[link.old_unique_session_id] for link in links
    }
    if not recovered:
        return {}
    joins = [
        Join(usid, joined_at)
        for usid, joined_at in conn.execute(
            select(_p.c.unique_session_id, _p.c.joined_at).where(
                _among(conn, _p.c.unique_session_id, recovered), _p.c.joined_at.is_not(None)
            )
        )
    ]
    return returned_participants(recovered, joins, window)


def _write(conn: Connection, old: str, link: Link | None, participants_returned: int) -> None:
    conn.execute(
        update(_t)
        .where(_t.c.old_unique_session_id == old)
        .values(
            new_unique_session_id=link.new_unique_session_id if link else None,
            to_node=link.to_node if link else None,
            recovered_at=link.recovered_at if link else None,
            time_to_recover_ms=link.time_to_recover_ms if link else None,
            participants_returned=participants_returned,
        )
    )
