"""The simulator's model (services/simulator/model.py): deterministic, valid input, and a story
the rule engine judges as the model says — zero dead letters without faults, exactly one
`nodeCrashed` per injected crash, none for a blip or a planned shutdown."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
from collections import Counter
from collections.abc import Sequence

import pytest

from services.core.errors import RejectedInput
from services.core.rules import (
    Emit,
    InMemoryRulesStore,
    Input,
    NodeEngine,
    Output,
    Reject,
    RuleSettings,
)
from services.core.validation import ValidInput, validate_input
from services.simulator.config import FaultRates, SimConfig, SimRecord, preset
from services.simulator.model import Simulation
from services.simulator.run import TokenBucket
from tests.support.rules_builders import T0

HEARTBEAT_TIMEOUT = 4000
BASE = SimConfig(start_ms=T0, seed=7, nodes=4, duration_s=180, session_rate=0.5, mean_session_s=40)
FAULTY = dataclasses.replace(
    BASE,
    heartbeat_timeout_ms=HEARTBEAT_TIMEOUT,
    faults=FaultRates(
        crash_disconnect=40,
        crash_silent=40,
        blip=60,
        flap=20,
        planned_shutdown=20,
        malformed_per_min=6,
        node_return_s=10,
        recovery_share=0.7,
    ),
)


def _kind(record: SimRecord) -> str:
    return "liveness" if record.role == "liveness" else "session"


def _played(config: SimConfig) -> tuple[Simulation, list[SimRecord]]:
    sim = Simulation(config)
    return sim, list(sim)


def _replay(sim: Simulation, records: Sequence[SimRecord], settings: RuleSettings) -> list[Output]:
    """The detector's path in one process: validate, route sessions to their node, apply in
    timestamp order, and move the watermark (everything before a record's timestamp is in)."""
    store = InMemoryRulesStore()
    engine = NodeEngine(store, settings)
    offsets, hosts, out = itertools.count(1), {}, []

    def advance(watermark: int) -> None:
        for node, due in list(store.timers.items()):
            if due <= watermark:
                out.extend(engine.advance(node, watermark))

    for record in records:
        try:
            valid = validate_input(_kind(record), record.key.encode(), record.value)  # type: ignore[arg-type]
        except RejectedInput:
            continue
        advance(record.timestamp - 1)
        if valid.kind == "liveness":
            item = Input("liveness", valid.payload, 0, next(offsets))
            out += engine.on_liveness(valid.key, item)
            continue
        if valid.event == "sessionCreated":
            hosts[valid.key] = str(valid.payload["mediaNodeId"])
        item = Input("session", valid.payload, 1, next(offsets))
        out += engine.on_session(hosts[valid.key], item)
    advance(sim.horizon_ms)
    return out


def _valid(records: Sequence[SimRecord]) -> list[ValidInput]:
    valid = []
    for record in records:
        with contextlib.suppress(RejectedInput):
            valid.append(validate_input(_kind(record), record.key.encode(), record.value))  # type: ignore[arg-type]
    return valid


def _bodies(outputs: Sequence[Output], event: str) -> list[dict[str, object]]:
    return [o.body for o in outputs if isinstance(o, Emit) and o.body["event"] == event]


def test_same_seed_same_bytes_other_seed_other_story() -> None:
    config = dataclasses.replace(FAULTY, duration_s=60)
    first, again = _played(config)[1], _played(config)[1]
    assert first == again
    assert _played(dataclasses.replace(config, seed=8))[1] != first
    later = Simulation(dataclasses.replace(config, start_ms=T0 + 86_400_000))
    assert len(list(later)) == len(first)
    assert later.counts == _played(config)[0].counts  # the story depends on the seed only


def test_every_record_is_valid_input_except_the_malformed_ones() -> None:
    sim, records = _played(FAULTY)
    codes: Counter[str] = Counter()
    for record in records:
        try:
            valid = validate_input(_kind(record), record.key.encode(), record.value)  # type: ignore[arg-type]
        except RejectedInput as e:
            codes[e.code] += 1
            continue
        assert valid.key == record.key
        assert valid.timestamp == record.timestamp
        assert json.loads(record.value) == valid.payload
    assert codes == sim.counts.malformed
    assert sim.counts.malformed_total > 0


def test_timestamps_never_go_back() -> None:
    _sim, records = _played(FAULTY)
    stamps = [r.timestamp for r in records]
    assert stamps == sorted(stamps)
    assert stamps[0] >= T0
    last: dict[str, int] = {}
    for r in records:
        assert r.timestamp >= last.get(r.key, 0)
        last[r.key] = r.timestamp


def test_counts_match_the_records() -> None:
    sim, records = _played(FAULTY)
    events = Counter(str(v.event) for v in _valid(records))
    recordings = [
        v
        for v in _valid(records)
        if v.event == "recordingStatusChanged" and v.payload["status"] == "started"
    ]
    c = sim.counts
    assert c.records["liveness"] + c.records["sessions"] == len(records)
    assert c.sessions == events["sessionCreated"] >= c.recreated_sessions > 0
    assert c.participants == events["participantJoined"]
    assert c.recordings == len(recordings) > 0
    assert c.broadcasts == events["broadcastStarted"] > 0
    assert c.signals == events["signalSent"] > 0
    assert c.crashes == len(sim.crashes) == c.crashes_disconnect + c.crashes_silent
    assert c.crashes_disconnect > 0 and c.crashes_silent > 0
    assert c.blips > 0 and c.flaps > 0 and c.planned_shutdowns > 0
    assert events["mediaNodeStatusChanged"] == 2 * c.planned_shutdowns
    assert events["nodeConnected"] == (
        BASE.nodes + c.reconnections_in_grace + c.node_recoveries + c.node_restarts
    )


def test_a_fault_free_cluster_gives_no_dead_letter_and_no_incident() -> None:
    sim, records = _played(BASE)
    outputs = _replay(sim, records, RuleSettings(grace_ms=BASE.grace_ms))
    assert [o for o in outputs if isinstance(o, Reject)] == []
    assert _bodies(outputs, "incidentOpened") == []
    assert len(_bodies(outputs, "sessionCreated")) == sim.counts.sessions > 20
    assert sim.counts.crashes == 0 and sim.counts.malformed_total == 0


def test_each_injected_crash_is_declared_once_and_nothing_else_is() -> None:
    sim, records = _played(FAULTY)
    settings = RuleSettings(grace_ms=FAULTY.grace_ms, heartbeat_timeout_ms=HEARTBEAT_TIMEOUT)
    outputs = _replay(sim, records, settings)
    assert [o for o in outputs if isinstance(o, Reject)] == []
    crashed = sorted(
        (str(b["id"]), b["timeOfDisconnection"], b["timestamp"])
        for b in _bodies(outputs, "nodeCrashed")
    )
    expected = sorted((c.node, c.disconnected_at, c.deadline) for c in sim.crashes)
    assert crashed == expected
    causes = Counter(str(b["cause"]) for b in _bodies(outputs, "incidentOpened"))
    assert causes["silent"] == sim.counts.crashes_silent
    outcomes = Counter(str(b["outcome"]) for b in _bodies(outputs, "incidentClosed"))
    assert outcomes == {
        "crashed": sim.counts.crashes,
        "reconnected": sim.counts.reconnections_in_grace,
    }
    assert len(_bodies(outputs, "nodeRecovered")) == sim.counts.node_recoveries > 0


def test_planned_shutdowns_alone_crash_nothing() -> None:
    config = dataclasses.replace(BASE, faults=FaultRates(planned_shutdown=60, node_return_s=5))
    sim, records = _played(config)
    outputs = _replay(sim, records, RuleSettings(grace_ms=config.grace_ms))
    assert sim.counts.planned_shutdowns > 0
    assert [o for o in outputs if isinstance(o, Reject)] == []
    assert _bodies(outputs, "nodeCrashed") == []
    assert _bodies(outputs, "incidentOpened") == []
    statuses = _bodies(outputs, "mediaNodeStatusChanged")
    assert len(statuses) == 2 * sim.counts.planned_shutdowns


def test_a_run_without_end_goes_on() -> None:
    forever = Simulation(dataclasses.replace(BASE, duration_s=0))
    records = list(itertools.islice(forever, 5000))
    assert len(records) == 5000
    assert records[-1].timestamp > T0 + BASE.duration_s * 1000


def test_silence_crashes_need_the_detector_to_watch_heartbeats() -> None:
    with pytest.raises(ValueError, match="heartbeat timeout"):
        Simulation(dataclasses.replace(BASE, faults=FaultRates(crash_silent=1)))
    with pytest.raises(ValueError, match="heartbeat more often"):
        Simulation(dataclasses.replace(BASE, heartbeat_timeout_ms=500))
    assert preset("chaos", heartbeat_timeout_ms=0).crash_silent == 0
    assert preset("chaos", heartbeat_timeout_ms=5000).crash_silent > 0
    assert preset("none", heartbeat_timeout_ms=5000) == FaultRates()


def test_token_bucket_holds_the_rate() -> None:
    clock = [0.0]
    bucket = TokenBucket(rate=100, burst=10, clock=lambda: clock[0])
    waits = [bucket.wait_time() for _ in range(10)]
    assert waits == [0.0] * 10  # the burst
    assert bucket.wait_time() == pytest.approx(0.01)
    clock[0] += 1.0  # a second later: the debt is paid and the bucket full again
    assert [bucket.wait_time() for _ in range(9)] == [0.0] * 9
