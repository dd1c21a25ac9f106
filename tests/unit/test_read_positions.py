"""The detector's own read positions (services/detector/positions.py): which records an agent
processes, and when it reads a partition again."""

from __future__ import annotations

from services.detector.positions import Rewinds, Verdict, judge, position_key


def test_the_first_record_of_a_partition_never_seen_is_processed() -> None:
    assert judge(offset=41, expected=None) is Verdict.PROCESS


def test_the_next_record_is_processed() -> None:
    assert judge(offset=7, expected=7) is Verdict.PROCESS


def test_a_record_below_the_position_is_a_replay() -> None:
    # re-delivered after a restart, a rebalance or a seek: its effects are already durable
    assert judge(offset=3, expected=7) is Verdict.REPLAY


def test_a_record_above_the_position_is_a_gap() -> None:
    # Faust skipped (and acknowledged) records 7…11 across a rebalance
    assert judge(offset=12, expected=7) is Verdict.GAP


def test_a_rewind_is_made_once_until_it_is_overdue() -> None:
    rewinds = Rewinds(retry_after_s=5.0)
    key = position_key("mediacdr.sessions", 3)
    assert rewinds.due(key, 7, now=100.0)
    assert not rewinds.due(key, 7, now=101.0)  # later records of the old fetch keep coming
    assert rewinds.due(key, 7, now=105.5)  # the seek did not take effect: seek again


def test_a_rewind_to_another_position_is_made_at_once() -> None:
    rewinds = Rewinds(retry_after_s=5.0)
    assert rewinds.due("t:0", 7, now=100.0)
    assert rewinds.due("t:0", 9, now=100.5)


def test_a_rewind_that_took_effect_is_forgotten() -> None:
    rewinds = Rewinds(retry_after_s=5.0)
    rewinds.due("t:0", 7, now=100.0)
    rewinds.done("t:0")
    assert rewinds.due("t:0", 7, now=100.1)
