"""Recoveries whose crash is read after the re-creation (CONTRACT §10, §12).

The projection links a ``sessionCreated`` to the crashed incarnation it replaces when the
creation is read (``ProjectionStore._link_recoveries``). The crash is not always read first,
although both incarnations share the session id and so the CDR partition: the detector writes a
crash's cascade when the node's deadline is decided, and the copy of the re-creation — hosted on
another node — does not wait for that decision. A detector catching up on a backlog (after a
restart, or a broker outage) can copy the re-creation before it decides the crash, so the CDR
holds the new ``sessionCreated`` *before* the old incarnation's ``sessionDestroyed``. Without
this second way round, the live projection (which read them in two batches) and a rebuild (which
read them in one) would differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Connection, func, select, update

from services.core.projection import Candidate, Creation, Link, ProjectedRecord, link_recoveries
from services.store import models

__all__ = ["link_crashes_read_late", "record_link"]


def record_link(conn: Connection, link: Link, participants_returned: int | None = None) -> None:
    """Write ``link`` into its crashed incarnation's row, with the participants already counted
    when given (a crash read late); otherwise the count is left for the joins to add."""
    t = models.session_recoveries
    values: dict[str, object] = {
        "new_unique_session_id": link.new_unique_session_id,
        "to_node": link.to_node,
        "recovered_at": link.recovered_at,
        "time_to_recover_ms": link.time_to_recover_ms,
    }
    if participants_returned is not None:
        values["participants_returned"] = participants_returned
    conn.execute(
        update(t).where(t.c.old_unique_session_id == link.old_unique_session_id).values(values)
    )


def link_crashes_read_late(
    conn: Connection, records: Iterable[ProjectedRecord], window: timedelta
) -> set[str]:
    """Link the crashed incarnations closed in ``records`` (already merged into the rows) to
    re-creations already projected, counting their participants already projected; returns the
    new incarnations linked here (their joins in this batch are counted already)."""
    closed = {
        r.body["uniqueSessionId"]
        for r in records
        if r.event == "sessionDestroyed" and r.body.get("reason") == "nodeCrashed"
    }
    if not closed:
        return set()
    t, s, p = models.session_recoveries, models.sessions, models.participants
    waiting = [
        Candidate(*row)
        for row in conn.execute(
            select(t.c.old_unique_session_id, t.c.session_id, t.c.crashed_at).where(
                t.c.old_unique_session_id.in_(closed),
                t.c.new_unique_session_id.is_(None),
                t.c.crashed_at.is_not(None),
            )
        )
    ]
    if not waiting:
        return set()
    taken = select(t.c.new_unique_session_id).where(t.c.new_unique_session_id.is_not(None))
    creations = [
        Creation(*row)
        for row in conn.execute(
            select(s.c.unique_session_id, s.c.session_id, s.c.media_node_id, s.c.created_at).where(
                s.c.session_id.in_({c.session_id for c in waiting}),
                s.c.created_at.is_not(None),
                s.c.unique_session_id.not_in(taken),
            )
        )
    ]
    crashed_at = {c.old_unique_session_id: c.crashed_at for c in waiting}
    linked = set()
    for link in link_recoveries(waiting, creations, window):
        until = crashed_at[link.old_unique_session_id] + window
        returned = conn.execute(
            select(func.count()).where(
                p.c.unique_session_id == link.new_unique_session_id, p.c.joined_at <= until
            )
        ).scalar_one()
        record_link(conn, link, participants_returned=returned)
        linked.add(link.new_unique_session_id)
    return linked
