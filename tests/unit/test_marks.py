"""Event-time marks: what a router vouches for, and what a node waits for."""

from __future__ import annotations

import json

import pytest

from services.detector.marks import (
    NOTHING_KNOWN,
    OutageGuard,
    PartitionProgress,
    Watermarks,
    decode_mark,
    encode_mark,
    source_key,
)

LATENESS = 100


def test_a_partition_read_to_its_end_vouches_for_the_wall_clock() -> None:
    progress = PartitionProgress()
    progress.forwarded(offset=4, timestamp=1_000)
    assert progress.mark(resumed=0, end_offset=5, wall_ms=9_000, lateness_ms=LATENESS) == 8_900


def test_a_partition_still_reading_vouches_only_for_what_it_forwarded() -> None:
    progress = PartitionProgress()
    progress.forwarded(offset=4, timestamp=1_000)
    assert progress.mark(resumed=0, end_offset=9, wall_ms=9_000, lateness_ms=LATENESS) == 900


def test_a_durable_read_position_counts_as_read() -> None:
    assert PartitionProgress().mark(resumed=7, end_offset=7, wall_ms=5_000, lateness_ms=0) == 5_000
    assert PartitionProgress().mark(resumed=6, end_offset=7, wall_ms=5_000, lateness_ms=0) is None


def test_an_empty_partition_is_caught_up() -> None:
    assert PartitionProgress().mark(resumed=0, end_offset=0, wall_ms=5_000, lateness_ms=0) == 5_000


def test_the_highest_timestamp_wins_over_later_lower_ones() -> None:
    progress = PartitionProgress()
    progress.forwarded(offset=0, timestamp=2_000)
    progress.forwarded(offset=1, timestamp=1_500)
    assert progress.mark(resumed=0, end_offset=10, wall_ms=0, lateness_ms=0) == 2_000


def test_stalled_only_after_records_wait_for_the_whole_delay() -> None:
    progress = PartitionProgress()
    assert not progress.stalled(resumed=0, end_offset=3, wall_ms=1_000, after_ms=5_000)
    assert not progress.stalled(resumed=0, end_offset=3, wall_ms=5_999, after_ms=5_000)
    assert progress.stalled(resumed=0, end_offset=3, wall_ms=6_000, after_ms=5_000)
    # the clock restarts after a report, and any progress clears it
    assert not progress.stalled(resumed=0, end_offset=3, wall_ms=6_001, after_ms=5_000)
    progress.forwarded(offset=0, timestamp=None)
    assert not progress.stalled(resumed=0, end_offset=3, wall_ms=20_000, after_ms=5_000)


def test_nothing_waits_when_everything_was_read() -> None:
    progress = PartitionProgress()
    progress.forwarded(offset=2, timestamp=None)
    assert not progress.stalled(resumed=0, end_offset=3, wall_ms=0, after_ms=0)
    assert not progress.stalled(resumed=0, end_offset=3, wall_ms=10_000, after_ms=0)


def test_a_node_waits_for_its_liveness_partition_and_every_sessions_partition() -> None:
    watermarks = Watermarks(session_partitions=2)
    watermarks.update({"L1": 500, "S0": 400})
    assert watermarks.for_node(1) is None  # S1 never reported
    watermarks.update({"S1": 300})
    assert watermarks.for_node(1) == 300
    assert watermarks.for_node(0) is None  # L0 never reported
    assert watermarks.for_node(None) is None


def test_session_input_is_told_how_far_its_nodes_liveness_partition_was_read() -> None:
    watermarks = Watermarks(session_partitions=1)
    assert watermarks.liveness_until(None) is None  # no liveness yet: nothing to wait for
    assert watermarks.liveness_until(2) == NOTHING_KNOWN  # not reported yet: wait
    watermarks.update({"L2": 700, "S0": 100})
    assert watermarks.liveness_until(2) == 700  # the sessions partitions do not count here


def test_marks_never_go_back() -> None:
    watermarks = Watermarks(session_partitions=1)
    watermarks.update({"L0": 500, "S0": 500})
    watermarks.update({"L0": 200})
    assert watermarks.for_node(0) == 500


def test_marks_round_trip() -> None:
    marks = {source_key("liveness", 3): 10, source_key("sessions", 11): 20}
    assert marks == {"L3": 10, "S11": 20}
    assert decode_mark(json.loads(encode_mark(marks))) == marks


def test_after_a_broker_outage_the_wall_clock_vouches_for_nothing_until_it_settles() -> None:
    guard = OutageGuard(gap_s=2.0, settle_s=10.0)
    assert guard.answered(100.0, 100.01) is None and guard.trust_wall_clock(100.01)
    guard.failed(100.05)  # the broker is gone: requests fail …
    guard.failed(105.0)
    assert guard.answered(129.0, 130.0) == pytest.approx(29.95)  # … until it answers again
    assert not guard.trust_wall_clock(130.0)
    assert guard.answered(131.0, 131.01) is None and not guard.trust_wall_clock(131.01)
    assert guard.trust_wall_clock(140.0)


def test_a_request_that_hangs_through_an_outage_counts_as_one() -> None:
    guard = OutageGuard(gap_s=2.0, settle_s=10.0)
    assert guard.answered(200.0, 225.0) == pytest.approx(25.0)
    assert not guard.trust_wall_clock(230.0) and guard.trust_wall_clock(235.0)


def test_a_slow_tick_of_the_worker_is_not_an_outage() -> None:
    guard = OutageGuard(gap_s=2.0, settle_s=10.0)
    guard.answered(300.0, 300.01)
    assert guard.answered(320.0, 320.02) is None  # 20 s between ticks, each answered at once
    assert guard.trust_wall_clock(320.02)


def test_partitions_given_back_while_settling_settle_from_then() -> None:
    guard = OutageGuard(gap_s=2.0, settle_s=10.0)
    guard.failed(400.0)
    guard.reassigned(405.0)  # the group rebalanced during the outage
    assert guard.answered(419.0, 420.0) == pytest.approx(20.0)
    guard.reassigned(428.0)  # the worker rejoined its group 8 s after the broker came back
    assert not guard.trust_wall_clock(437.0)
    assert guard.trust_wall_clock(438.0)


def test_a_rebalance_without_an_outage_does_not_settle() -> None:
    guard = OutageGuard(gap_s=2.0, settle_s=10.0)
    assert guard.answered(500.0, 500.01) is None
    guard.reassigned(501.0)
    assert guard.trust_wall_clock(501.0)


def test_without_the_wall_clock_a_caught_up_partition_vouches_only_for_its_records() -> None:
    progress = PartitionProgress()
    progress.forwarded(9, 5_000)
    assert progress.mark(0, 10, 20_000, 100) == 19_900
    assert progress.mark(0, 10, 20_000, 100, trust_wall_clock=False) == 4_900
