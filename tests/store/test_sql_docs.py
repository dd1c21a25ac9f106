"""Every query in docs/SQL.md runs on a real PostgreSQL holding a projected story and answers
what its title says (the story: tests/support/cdr_story.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from services.store.projection import ProjectionStore
from tests.support.cdr_story import (
    CRASH_AT,
    DISCONNECT_AT,
    INCIDENT,
    NODE_A,
    NODE_B,
    NODE_BACK_AT,
    RECREATED_AT,
    cdr_story,
)
from tests.support.databases import fresh_database_url, migrated_engine
from tests.support.rules_builders import T0

pytestmark = pytest.mark.contract

DOC = Path(__file__).resolve().parents[2] / "docs" / "SQL.md"
DAY = date(2023, 11, 14)  # T0 is 2023-11-14T22:13:20Z; the story fits in the day
Rows = list[dict[str, Any]]


def documented_queries() -> dict[str, str]:
    """``title → SQL`` for every numbered query section of docs/SQL.md."""
    pattern = re.compile(r"^### \d+\. (?P<title>.+?)\n.*?```sql\n(?P<sql>.*?)```", re.M | re.S)
    return {m["title"].strip(): m["sql"] for m in pattern.finditer(DOC.read_text())}


@pytest.fixture(scope="module")
def story_db(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = migrated_engine(
        fresh_database_url("postgresql", tmp_path_factory.mktemp("sql"), postgres_url)
    )
    records = cdr_story().records
    positions = {(r.topic, r.partition): r.offset + 1 for r in records}
    ProjectionStore(engine).apply(records, positions)
    yield engine
    engine.dispose()


def run(engine: Engine, sql: str) -> Rows:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(text(sql))]


def sessions_per_node(rows: Rows) -> None:
    assert [(r["media_node_id"], r["day"], r["sessions"]) for r in rows] == [
        (NODE_A, DAY, 2),
        (NODE_B, DAY, 3),
    ]


def crash_impact(rows: Rows) -> None:
    (crash,) = rows
    assert (crash["incident_id"], crash["media_node_id"]) == (INCIDENT, NODE_A)
    impact = ("sessions_closed", "participants_evicted", "recordings_stopped", "broadcasts_stopped")
    assert tuple(crash[k] for k in impact) == (2, 3, 1, 1)
    assert crash["grace_seconds"] == Decimal((CRASH_AT - DISCONNECT_AT) // 1000)
    assert crash["decision_delay_ms"] is None  # the story's records carry no ce_decidedat


def billable_minutes(rows: Rows) -> None:
    minutes = {r["unique_session_id"]: r["billable_minutes"] for r in rows}
    assert minutes == {
        f"ses_Alpha_{T0 + 100}": Decimal("0.17"),  # 9.9 s until the media was lost
        f"ses_Beta_{T0 + 3_000}": Decimal("0.12"),  # 7.0 s
        f"ses_Gamma_{T0 + 4_000}": Decimal("1.00"),  # 60.2 s, closed normally
    }


def recovery(rows: Rows) -> None:
    (r,) = rows
    assert (r["sessions_crashed"], r["sessions_recovered"]) == (2, 1)
    assert r["p50_ms"] == r["p95_ms"] == RECREATED_AT - CRASH_AT
    assert r["came_back"] == Decimal("1.000")


def availability(rows: Rows) -> None:
    down_s = (NODE_BACK_AT - DISCONNECT_AT) / 1000
    expected = Decimal(str(round(100 * (1 - down_s / 86400), 3)))
    assert [(r["media_node_id"], r["day"], r["availability_pct"]) for r in rows] == [
        (NODE_A, DAY, expected),
        (NODE_B, DAY, Decimal("100.000")),
    ]


def left_reasons(rows: Rows) -> None:
    assert [(r["reason"], r["participants"]) for r in rows] == [
        ("nodeCrashed", 3),
        ("disconnect", 1),
    ]


def daily_active(rows: Rows) -> None:
    assert [(r["day"], r["participants"], r["sessions"]) for r in rows] == [(DAY, 6, 4)]


def blips_and_crashes(rows: Rows) -> None:
    found = [(r["media_node_id"], r["blips"], r["crashes"], r["in_grace_now"]) for r in rows]
    assert found == [(NODE_A, 1, 1, 0), (NODE_B, 0, 0, 0)]


def live_sessions(rows: Rows) -> None:
    assert [(r["media_node_id"], r["live_sessions"]) for r in rows] == [(NODE_B, 2)]


def one_session(rows: Rows) -> None:
    assert [r["event"] for r in rows] == [
        "sessionCreated",
        "participantJoined",
        "participantLeft",
        "sessionDestroyed",
        "sessionCreated",
    ]
    assert [r["incident_id"] for r in rows][2:4] == [INCIDENT, INCIDENT]


CHECKS: dict[str, Callable[[Rows], None]] = {
    "Sessions per node per day": sessions_per_node,
    "Impact of each crash": crash_impact,
    "Billable minutes per closed session (media_lost_at for crashes)": billable_minutes,
    "Time to recover (p50/p95) and the share of participants who came back": recovery,
    "Node availability per day": availability,
    "Top participantLeft reasons": left_reasons,
    "Daily active participants": daily_active,
    "Blips vs crashes per node": blips_and_crashes,
    "Sessions live on a node now": live_sessions,
    "The CDR of one session, in order": one_session,
}


def test_every_documented_query_is_checked() -> None:
    assert set(documented_queries()) == set(CHECKS)
    assert len(CHECKS) >= 8


@pytest.mark.parametrize("title", sorted(CHECKS))
def test_documented_query(story_db: Engine, title: str) -> None:
    CHECKS[title](run(story_db, documented_queries()[title]))
