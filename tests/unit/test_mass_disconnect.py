"""The mass-disconnection rule: a sliding window over disconnections and a running-node count."""

from __future__ import annotations

import json

import pytest

from services.core.errors import InvalidJson, SchemaViolation, UnknownEvent
from services.core.events import MassDisconnect, event_to_wire
from services.core.rules.mass_disconnect import (
    Disconnection,
    MassDisconnectPolicy,
    MassDisconnectWatch,
    disconnection_of,
    running_counts,
    share_of,
)
from services.core.schemas import compiled_validator

T0 = 1_622_548_100_000
GRACE = 3000
NOW = T0 + 60_000
POLICY = MassDisconnectPolicy(share=0.5, min_running=4, window_ms=GRACE)


def watch(running: dict[int, int] | None = None, partitions: int = 2) -> MassDisconnectWatch:
    w = MassDisconnectWatch(POLICY, partitions)
    w.running_reported(running if running is not None else {0: 3, 1: 3})  # 6 running nodes
    return w


def disconnect(w: MassDisconnectWatch, *times: int, now: int = NOW) -> list[MassDisconnect]:
    found: list[MassDisconnect] = []
    for i, at in enumerate(times):
        found += w.disconnected(Disconnection(f"media_{i}", at), now)
    return found


def test_more_than_the_share_within_one_grace_window_is_a_mass_disconnection() -> None:
    found = disconnect(watch(), T0, T0 + 500, T0 + 1000, T0 + 2999)
    assert len(found) == 1
    mass = found[0]
    assert mass.node_ids == ["media_0", "media_1", "media_2", "media_3"]
    assert (mass.window_start, mass.timestamp, mass.window_ms) == (T0, T0 + 2999, GRACE)
    assert (mass.running_nodes, mass.threshold) == (6, 0.5)
    assert share_of(mass) == pytest.approx(4 / 6)


def test_the_share_itself_is_not_more_than_the_share() -> None:
    assert disconnect(watch(), T0, T0 + 500, T0 + 1000) == []  # 3 of 6


def test_disconnections_further_apart_than_the_grace_window_are_not_one_burst() -> None:
    assert disconnect(watch(), T0, T0 + 1000, T0 + 2000, T0 + 3000) == []  # T0 left the window


def test_order_of_arrival_does_not_matter() -> None:
    found = disconnect(watch(), T0 + 2000, T0 + 1000, T0, T0 + 2500)
    assert [m.node_ids for m in found] == [["media_0", "media_1", "media_2", "media_3"]]
    late = disconnect(watch(), T0 + 2500, T0 + 2000, T0 + 1000, T0)  # the last one is earliest
    assert [(m.window_start, m.timestamp) for m in late] == [(T0, T0 + 2500)]


def test_a_node_that_disconnects_twice_counts_once() -> None:
    w = watch()
    found = [
        *w.disconnected(Disconnection("media_a", T0), NOW),
        *w.disconnected(Disconnection("media_a", T0 + 100), NOW),
        *w.disconnected(Disconnection("media_b", T0 + 200), NOW),
        *w.disconnected(Disconnection("media_c", T0 + 300), NOW),
    ]
    assert found == []  # 3 distinct nodes of 6
    found = w.disconnected(Disconnection("media_d", T0 + 400), NOW)
    assert found[0].node_ids == ["media_a", "media_b", "media_c", "media_d"]


def test_one_fact_per_burst_then_a_later_burst_again() -> None:
    w = watch({0: 5, 1: 5})
    first = disconnect(w, *(T0 + 100 * i for i in range(8)))  # 6th of 10 crosses
    assert [len(m.node_ids) for m in first] == [6]
    assert first[0].timestamp == T0 + 500
    # windows overlapping the one reported (ending before T0 + 500 + GRACE) are the same burst
    more = [w.disconnected(Disconnection(f"media_more{i}", T0 + 3000 + i), NOW) for i in range(6)]
    assert more == [[]] * 6
    later = T0 + 10 * GRACE
    again = [w.disconnected(Disconnection(f"media_x{i}", later + i), NOW) for i in range(6)]
    assert [len(m.node_ids) for found in again for m in found] == [6]


def test_too_few_running_nodes_are_never_a_mass() -> None:
    assert disconnect(watch({0: 2, 1: 1}), T0, T0 + 1, T0 + 2) == []  # 3 of 3, below 4


def test_disconnections_wait_for_every_partitions_count() -> None:
    w = MassDisconnectWatch(POLICY, partitions=2)
    w.running_reported({0: 3})
    assert disconnect(w, T0, T0 + 1, T0 + 2, T0 + 3) == []  # partition 1 unknown: not judged
    found = w.running_reported({1: 3})
    assert [m.node_ids for m in found] == [["media_0", "media_1", "media_2", "media_3"]]
    assert w.running_reported({1: 3}) == []


def test_the_latest_count_of_a_partition_wins() -> None:
    w = watch({0: 3, 1: 3})
    w.running_reported({1: 10})  # 13 running now
    assert disconnect(w, T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5) == []
    assert len(w.disconnected(Disconnection("media_6", T0 + 6), NOW)) == 1  # 7 of 13


def test_disconnections_older_than_the_horizon_are_not_judged() -> None:
    old = NOW - POLICY.horizon_ms - 1
    assert disconnect(watch(), old, old + 1, old + 2, old + 3) == []


def test_the_fact_is_valid_on_the_wire() -> None:
    (mass,) = disconnect(watch(), T0, T0 + 1, T0 + 2, T0 + 3)
    body = event_to_wire(mass)
    compiled_validator("nodefacts", "massDisconnect")(body)
    assert body["event"] == "massDisconnect"
    assert body["nodeIds"] == sorted(body["nodeIds"])


def test_running_counts_follow_the_rules_state() -> None:
    rows = [
        {"home_partition": 0, "life": "running", "planned_shutdown": False},
        {"home_partition": 0, "life": "grace", "planned_shutdown": False},
        {"home_partition": 0, "life": "running", "planned_shutdown": True},  # shut down
        {"home_partition": 0, "life": "crashed", "planned_shutdown": False},
        {"home_partition": 1, "life": "removed", "planned_shutdown": False},
        {"home_partition": 2, "life": "running", "planned_shutdown": False},  # not owned
        {"home_partition": None, "life": "running", "planned_shutdown": False},
    ]
    assert running_counts(rows, {0, 1}) == {0: 2, 1: 0}


def fact(**body: object) -> bytes:
    return json.dumps(body).encode()


def test_disconnection_of_reads_incident_opened_and_ignores_the_other_facts() -> None:
    opened = fact(
        event="incidentOpened",
        timestamp=T0,
        incidentId=f"media_a_{T0}",
        id="media_a",
        timeOfDisconnection=T0,
        deadline=T0 + GRACE,
        cause="disconnected",
    )
    assert disconnection_of(opened) == Disconnection("media_a", T0)
    assert disconnection_of(fact(event="nodeRemoved", timestamp=T0, id="media_a")) is None


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"{not json", InvalidJson),
        (fact(timestamp=T0), UnknownEvent),
        (fact(event="incidentOpened", timestamp=T0, id="media_a"), SchemaViolation),
    ],
)
def test_unreadable_facts_raise_a_dead_letter_code(value: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        disconnection_of(value)
