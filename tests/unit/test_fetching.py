"""D11: the detector's consumer hands aiokafka a set of partitions that is true when empty."""

from __future__ import annotations

from faust.types import TP

from services.config import DetectorSettings
from services.detector.app import build_detector
from services.detector.fetching import FetchSet, GuardedConsumer


def test_an_empty_fetch_set_is_true_and_holds_nothing() -> None:
    partitions = FetchSet({TP("t", 0)})
    partitions.discard(TP("t", 0))
    assert partitions
    assert TP("t", 0) not in partitions
    assert len(partitions) == 0


def test_pausing_every_partition_leaves_the_detector_consumer_a_true_empty_set() -> None:
    app = build_detector(DetectorSettings()).app
    consumer = app.consumer
    assert isinstance(consumer, GuardedConsumer)
    assigned = {TP("liveness", 0), TP("nodes-changelog", 0)}
    consumer._set_active_tps(assigned)
    consumer.pause_partitions(assigned)  # what a rebalance does first
    active = consumer._get_active_partitions()
    assert isinstance(active, FetchSet)
    assert active and not set(active)
    consumer.resume_partitions({TP("nodes-changelog", 0)})  # what recovery does next
    assert consumer._get_active_partitions() == {TP("nodes-changelog", 0)}
