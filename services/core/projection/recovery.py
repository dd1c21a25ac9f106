"""Recovery tracking (CONTRACT §10): linking a new incarnation to the crashed one it replaces.

A ``sessionCreated`` for a session id whose previous incarnation was closed by a crash at most the
recovery window before is a recovery. Both incarnations share the session id, hence the Kafka key
and partition, but the crash is not always read first: a detector catching up on a backlog can
copy the re-creation — even a later incarnation's whole life — before it decides the crash. So
the store recomputes a session's links from everything projected so far whenever a batch touches
it (``services/store/recoveries.py``); :func:`link_recoveries` is a function of the sets only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Candidate", "Creation", "Join", "Link", "link_recoveries", "returned_participants"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A crashed incarnation not yet recovered."""

    old_unique_session_id: str
    session_id: str
    crashed_at: datetime


@dataclass(frozen=True, slots=True)
class Creation:
    unique_session_id: str
    session_id: str
    media_node_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Link:
    old_unique_session_id: str
    new_unique_session_id: str
    to_node: str | None
    recovered_at: datetime
    time_to_recover_ms: int


@dataclass(frozen=True, slots=True)
class Join:
    unique_session_id: str
    joined_at: datetime


def link_recoveries(
    candidates: Iterable[Candidate], creations: Sequence[Creation], window: timedelta
) -> list[Link]:
    """Each creation takes the latest crash of its session id within ``window`` before it."""
    open_by_session: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        open_by_session.setdefault(candidate.session_id, []).append(candidate)
    links = []
    for creation in sorted(creations, key=lambda c: (c.created_at, c.unique_session_id)):
        waiting = open_by_session.get(creation.session_id, [])
        eligible = [
            c
            for c in waiting
            if c.crashed_at <= creation.created_at <= c.crashed_at + window
            and c.old_unique_session_id != creation.unique_session_id
        ]
        if not eligible:
            continue
        crashed = max(eligible, key=lambda c: (c.crashed_at, c.old_unique_session_id))
        waiting.remove(crashed)
        delay = creation.created_at - crashed.crashed_at
        links.append(
            Link(
                crashed.old_unique_session_id,
                creation.unique_session_id,
                creation.media_node_id,
                creation.created_at,
                delay // timedelta(milliseconds=1),
            )
        )
    return links


def returned_participants(
    recovered: dict[str, datetime], joins: Iterable[Join], window: timedelta
) -> dict[str, int]:
    """Joins to each recovered incarnation (by its id → crash time) within ``window`` of the crash.

    Connection ids are new after a crash, so people are counted, not matched.
    """
    counts: dict[str, int] = {}
    for join in joins:
        crashed_at = recovered.get(join.unique_session_id)
        if crashed_at is not None and join.joined_at <= crashed_at + window:
            counts[join.unique_session_id] = counts.get(join.unique_session_id, 0) + 1
    return counts
