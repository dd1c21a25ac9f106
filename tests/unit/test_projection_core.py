"""The projection's pure core: merge rules are order-independent; recoveries link as §10 says."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.core.projection import (
    TABLES,
    Candidate,
    Creation,
    Join,
    Skipped,
    link_recoveries,
    parse_record,
    returned_participants,
)
from services.core.projection.mapping import contributions, incident_disconnected_at
from tests.support.cdr_story import cdr_story

WINDOW = timedelta(seconds=300)
T = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@given(st.randoms(use_true_random=False))
def test_folding_a_story_in_any_order_gives_the_same_rows(rng: random.Random) -> None:
    found = [c for r in cdr_story().records for c in contributions(r)]

    def fold(items: list) -> dict:  # type: ignore[type-arg]
        rows: dict = {}  # type: ignore[type-arg]
        for c in items:
            spec = TABLES[c.table]
            rows[(c.table, c.key)] = spec.merge(
                rows.get((c.table, c.key)) or spec.empty_row(c.key), c.values
            )
        return rows

    shuffled = list(found)
    rng.shuffle(shuffled)
    assert fold(shuffled) == fold(found)


def test_node_ids_with_underscores_keep_their_incident_time() -> None:
    assert incident_disconnected_at("media_i-0a_b_1700000000123") == 1_700_000_000_123
    assert incident_disconnected_at("no-time") is None


def test_a_creation_links_the_latest_crash_inside_the_window() -> None:
    candidates = [
        Candidate("ses_A_1", "ses_A", T),
        Candidate("ses_A_2", "ses_A", T + timedelta(seconds=10)),
        Candidate("ses_B_1", "ses_B", T),
    ]
    creations = [
        Creation("ses_A_3", "ses_A", "node-b", T + timedelta(seconds=12)),
        Creation("ses_B_2", "ses_B", "node-b", T + WINDOW + timedelta(milliseconds=1)),
    ]
    (link,) = link_recoveries(candidates, creations, WINDOW)
    assert (link.old_unique_session_id, link.new_unique_session_id) == ("ses_A_2", "ses_A_3")
    assert (link.to_node, link.time_to_recover_ms) == ("node-b", 2_000)


def test_each_crash_is_recovered_once() -> None:
    candidates = [Candidate("ses_A_1", "ses_A", T)]
    creations = [
        Creation("ses_A_2", "ses_A", None, T + timedelta(seconds=1)),
        Creation("ses_A_3", "ses_A", None, T + timedelta(seconds=2)),
    ]
    assert [x.new_unique_session_id for x in link_recoveries(candidates, creations, WINDOW)] == [
        "ses_A_2"
    ]


def test_people_who_come_back_are_counted_inside_the_window_only() -> None:
    joins = [
        Join("ses_A_2", T + timedelta(seconds=5)),
        Join("ses_A_2", T + WINDOW),
        Join("ses_A_2", T + WINDOW + timedelta(seconds=1)),
        Join("ses_other", T),
    ]
    assert returned_participants({"ses_A_2": T}, joins, WINDOW) == {"ses_A_2": 2}


def test_records_the_projection_cannot_use_are_skipped_with_a_reason() -> None:
    def parse(value: bytes | None, source: str = "cdr") -> object:
        return parse_record(source, "mediacdr.cdr", 0, 7, value, [])  # type: ignore[arg-type]

    assert getattr(parse(b"\xff"), "reason", None) == "invalidJson"
    assert getattr(parse(None), "reason", None) == "invalidJson"
    assert getattr(parse(b'{"event":"nodeHeartbeat","timestamp":1}'), "reason", None) == (
        "unknownEvent"
    )
    assert getattr(parse(b'{"event":"sessionCreated","timestamp":"x"}'), "reason", None) == (
        "unknownEvent"
    )
    no_id = b'{"event":"sessionCreated","timestamp":1,"sessionId":"s"}'
    assert getattr(parse(no_id), "reason", None) == "schemaViolation"
    fact = b'{"event":"nodeRemoved","timestamp":5,"id":"n"}'
    record = parse(fact, "nodes")
    assert getattr(record, "event", None) == "nodeRemoved"
    assert getattr(parse(fact, "cdr"), "reason", None) == "unknownEvent"


def test_a_mass_disconnect_fact_is_read_and_contributes_no_rows() -> None:
    fact = {
        "event": "massDisconnect",
        "timestamp": 1_700_000_000_500,
        "windowStart": 1_700_000_000_000,
        "windowMs": 3000,
        "nodeIds": ["media_a", "media_b", "media_c"],
        "runningNodes": 4,
        "threshold": 0.5,
    }
    parsed = parse_record("nodes", "mediacdr.nodes", 0, 7, json.dumps(fact).encode(), [])
    assert not isinstance(parsed, Skipped)  # a known fact: the projector counts it, no warning
    assert contributions(parsed) == []
