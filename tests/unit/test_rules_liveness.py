"""Grace rules R1–R8 (CONTRACT §5) of the node engine, one rule at a time."""

from __future__ import annotations

import pytest

from services.core.rules import Input, RuleSettings
from tests.support.rules_builders import (
    GRACE_MS,
    LIVENESS_PARTITION,
    T0,
    Rig,
    codes,
    describe,
    emits,
    events,
    node_connected,
    node_disconnected,
    node_heartbeat,
    node_status_changed,
    participant_joined,
    rejects,
    session_created,
    validate,
)

NODE = "media_i-0a1b2c3d4e5f60001"
D_AT = T0 + 10_000  # time of disconnection, d
DEADLINE = D_AT + GRACE_MS  # D
INCIDENT = f"{NODE}_{D_AT}"
FAR = T0 + 10_000_000


def connected(settings: RuleSettings | None = None) -> Rig:
    rig = Rig(settings)
    rig.liveness(node_connected(NODE, T0))
    return rig


def disconnected(settings: RuleSettings | None = None) -> Rig:
    rig = connected(settings)
    rig.liveness(node_disconnected(NODE, D_AT))
    return rig


def removal(r: int) -> RuleSettings:
    return RuleSettings(grace_ms=GRACE_MS, reconnection_timeout_s=r)


# -- R1 disconnection ---------------------------------------------------------------------------


def test_disconnection_opens_an_incident_with_deadline_d_plus_grace() -> None:
    rig = connected()
    out = rig.liveness(node_disconnected(NODE, D_AT))
    assert [(e.stream, e.key, e.body, e.media_node_id, e.incident_id) for e in emits(out)] == [
        (
            "nodes",
            NODE,
            {
                "event": "incidentOpened",
                "timestamp": D_AT,
                "incidentId": INCIDENT,
                "id": NODE,
                "timeOfDisconnection": D_AT,
                "deadline": DEADLINE,
                "cause": "disconnected",
            },
            NODE,
            INCIDENT,
        )
    ]
    validate(emits(out)[0])
    assert rig.store.timers[NODE] == DEADLINE


def test_first_connection_writes_the_node_description_fact() -> None:
    rig = Rig()
    out = rig.liveness(node_connected(NODE, T0))
    assert [e.body for e in emits(out)] == [
        {"event": "nodeDescribed", "timestamp": T0, "id": NODE, **describe(NODE)}
    ]
    assert emits(rig.liveness(node_connected(NODE, T0 + 5))) == []  # unchanged: no new fact


def test_repeated_disconnection_changes_nothing() -> None:
    rig = disconnected()
    assert rig.liveness(node_disconnected(NODE, D_AT + 500)) == []
    assert rig.store.timers[NODE] == DEADLINE
    crash = emits(rig.advance(NODE, DEADLINE), "cdr")
    assert [(e.body["timestamp"], e.body["timeOfDisconnection"]) for e in crash] == [
        (DEADLINE, D_AT)
    ]


def test_heartbeats_during_an_incident_are_no_reconnection() -> None:
    rig = disconnected()
    assert rig.liveness(node_heartbeat(NODE, D_AT + 100)) == []
    assert rig.liveness(node_heartbeat(NODE, DEADLINE - 1)) == []
    assert events(rig.advance(NODE, DEADLINE), "cdr") == ["nodeCrashed"]


# -- R2 blip ------------------------------------------------------------------------------------


def test_reconnection_inside_grace_is_a_blip_with_no_cdr_event() -> None:
    rig = connected()
    out = rig.liveness(node_disconnected(NODE, D_AT))
    out += rig.liveness(node_connected(NODE, DEADLINE - 200))
    out += rig.advance(NODE, FAR)
    assert emits(out, "cdr") == []
    assert emits(out, "notifications") == []
    assert [(e.body["event"], e.body.get("outcome")) for e in emits(out, "nodes")] == [
        ("incidentOpened", None),
        ("incidentClosed", "reconnected"),
    ]
    closed = emits(out, "nodes")[1]
    assert closed.body == {
        "event": "incidentClosed",
        "timestamp": DEADLINE - 200,
        "incidentId": INCIDENT,
        "id": NODE,
        "outcome": "reconnected",
    }
    assert closed.incident_id == INCIDENT
    validate(closed)
    assert NODE not in rig.store.timers


def test_reconnection_stamped_at_the_deadline_is_too_late() -> None:
    rig = disconnected()
    assert rig.liveness(node_connected(NODE, DEADLINE)) == []  # held until decided
    out = rig.advance(NODE, DEADLINE)
    assert events(out, "cdr") == ["nodeCrashed", "nodeRecovered"]
    assert emits(out, "cdr")[1].body["timestamp"] == DEADLINE


def test_after_a_blip_a_new_disconnection_is_a_new_incident() -> None:
    rig = disconnected()
    rig.liveness(node_connected(NODE, D_AT + 1000))
    out = rig.liveness(node_disconnected(NODE, D_AT + 2000))
    assert [e.body["incidentId"] for e in emits(out, "nodes")] == [f"{NODE}_{D_AT + 2000}"]
    crash = emits(rig.advance(NODE, D_AT + 2000 + GRACE_MS), "cdr")
    assert [e.body["timeOfDisconnection"] for e in crash] == [D_AT + 2000]


# -- R3 crash -----------------------------------------------------------------------------------


def test_no_crash_before_the_watermark_reaches_the_deadline() -> None:
    rig = disconnected()
    assert rig.advance(NODE, DEADLINE - 1) == []
    assert events(rig.advance(NODE, DEADLINE), "cdr") == ["nodeCrashed"]


def test_crash_writes_exactly_one_node_crashed() -> None:
    rig = connected()
    rig.session(NODE, session_created("ses_Zulu", T0 + 100, NODE))
    rig.session(NODE, session_created("ses_Alpha", T0 + 200, NODE))
    rig.session(NODE, session_created("ses_Mike", T0 + 300, NODE))
    rig.liveness(node_disconnected(NODE, D_AT))
    out = rig.advance(NODE, DEADLINE + 50)
    out += rig.advance(NODE, DEADLINE + 5000)
    out += rig.liveness(node_connected(NODE, DEADLINE + 200))
    out += rig.advance(NODE, FAR)
    crashed = [e for e in emits(out, "cdr") if e.body["event"] == "nodeCrashed"]
    assert len(crashed) == 1
    assert crashed[0].body == {
        "event": "nodeCrashed",
        "timestamp": DEADLINE,
        "id": NODE,
        **describe(NODE),
        "nodeRole": "medianode",
        "sessionIds": ["ses_Alpha", "ses_Mike", "ses_Zulu"],
        "recordingIds": [],
        "broadcasts": [],
        "timeOfDisconnection": D_AT,
    }
    assert (crashed[0].key, crashed[0].media_node_id, crashed[0].incident_id) == (
        NODE,
        NODE,
        INCIDENT,
    )
    validate(crashed[0])
    fact = [e.body for e in emits(out, "nodes") if e.body["event"] == "incidentClosed"]
    assert fact == [
        {
            "event": "incidentClosed",
            "timestamp": DEADLINE,
            "incidentId": INCIDENT,
            "id": NODE,
            "outcome": "crashed",
        }
    ]


def test_node_never_described_crashes_with_null_description_fields() -> None:
    rig = Rig()
    rig.liveness(node_connected(NODE, T0, described=False))
    rig.liveness(node_disconnected(NODE, D_AT))
    (crash,) = emits(rig.advance(NODE, DEADLINE), "cdr")
    assert {k: crash.body[k] for k in ("environmentId", "ip", "uri", "clusterId")} == {
        "environmentId": None,
        "ip": None,
        "uri": None,
        "clusterId": None,
    }
    validate(crash)


# -- R4 silence ---------------------------------------------------------------------------------

H = 2000
SILENT = RuleSettings(grace_ms=GRACE_MS, heartbeat_timeout_ms=H)
LAST = T0 + 2000  # the last heartbeat before the silence
SILENT_D = LAST + H
SILENT_DEADLINE = SILENT_D + GRACE_MS


def heartbeating() -> Rig:
    rig = connected(SILENT)
    rig.liveness(node_heartbeat(NODE, T0 + 1000))
    rig.liveness(node_heartbeat(NODE, LAST))
    return rig


def test_silence_opens_an_incident_at_last_liveness_plus_timeout() -> None:
    rig = heartbeating()
    assert rig.advance(NODE, SILENT_D - 1) == []
    out = rig.advance(NODE, SILENT_D)
    assert [e.body for e in emits(out)] == [
        {
            "event": "incidentOpened",
            "timestamp": SILENT_D,
            "incidentId": f"{NODE}_{SILENT_D}",
            "id": NODE,
            "timeOfDisconnection": SILENT_D,
            "deadline": SILENT_DEADLINE,
            "cause": "silent",
        }
    ]
    validate(emits(out)[0])


@pytest.mark.parametrize(
    "sign_of_life",
    [
        node_heartbeat(NODE, SILENT_DEADLINE - 1),
        node_connected(NODE, SILENT_DEADLINE - 1),
        node_status_changed(NODE, SILENT_DEADLINE - 1, "launching", "running"),
    ],
    ids=["heartbeat", "nodeConnected", "mediaNodeStatusChanged"],
)
def test_any_liveness_event_before_the_silent_deadline_is_a_blip(sign_of_life: dict) -> None:
    rig = heartbeating()
    rig.advance(NODE, SILENT_D)
    out = rig.liveness(sign_of_life)
    out += rig.advance(NODE, SILENT_DEADLINE + 10)
    assert "nodeCrashed" not in events(out, "cdr")
    assert [e.body.get("outcome") for e in emits(out, "nodes")] == ["reconnected"]


def test_silence_past_the_grace_window_is_a_crash_and_any_liveness_event_recovers() -> None:
    rig = heartbeating()
    out = rig.advance(NODE, SILENT_DEADLINE)
    assert events(out, "cdr") == ["nodeCrashed"]
    crash = emits(out, "cdr")[0].body
    assert (crash["timestamp"], crash["timeOfDisconnection"]) == (SILENT_DEADLINE, SILENT_D)
    recovered = rig.liveness(node_heartbeat(NODE, SILENT_DEADLINE + 400))
    assert events(recovered, "cdr") == ["nodeRecovered"]


def test_a_sign_of_life_after_a_long_silence_still_means_a_crash() -> None:
    """The heartbeat ending the silence arrives before any watermark passed the silence: R8 says
    the outcome cannot depend on that interleaving, so the node crashed all the same."""
    rig = heartbeating()
    out = rig.liveness(node_heartbeat(NODE, SILENT_DEADLINE + 400))
    out += rig.advance(NODE, SILENT_DEADLINE + 401)
    assert events(out, "cdr") == ["nodeCrashed", "nodeRecovered"]
    crash = emits(out, "cdr")[0].body
    assert (crash["timestamp"], crash["timeOfDisconnection"]) == (SILENT_DEADLINE, SILENT_D)


def test_a_sign_of_life_after_a_short_silence_is_a_blip_in_any_interleaving() -> None:
    rig = heartbeating()
    out = rig.liveness(node_heartbeat(NODE, SILENT_D + 500))
    out += rig.advance(NODE, SILENT_D + 600)
    assert emits(out, "cdr") == []
    assert [e.body.get("outcome") for e in emits(out, "nodes")] == [None, "reconnected"]


def test_a_node_that_never_sent_heartbeats_is_not_watched_for_silence() -> None:
    rig = connected(SILENT)
    assert rig.advance(NODE, FAR) == []


def test_silence_is_ignored_without_a_heartbeat_timeout() -> None:
    rig = connected()
    rig.liveness(node_heartbeat(NODE, LAST))
    assert rig.advance(NODE, FAR) == []


# -- R5 recovery --------------------------------------------------------------------------------


def test_reconnection_after_a_crash_writes_node_recovered_and_the_node_is_empty() -> None:
    rig = disconnected()
    rig.session(NODE, session_created("ses_Alpha", T0 + 100, NODE))
    rig.advance(NODE, DEADLINE)
    out = rig.liveness(node_connected(NODE, DEADLINE + 200))
    (recovered,) = emits(out, "cdr")
    assert recovered.body == {
        "event": "nodeRecovered",
        "timestamp": DEADLINE + 200,
        "id": NODE,
        **describe(NODE),
        "nodeRole": "medianode",
    }
    assert recovered.incident_id == INCIDENT
    validate(recovered)
    rig.liveness(node_disconnected(NODE, DEADLINE + 1000))
    again = emits(rig.advance(NODE, DEADLINE + 1000 + GRACE_MS), "cdr")
    assert [(e.body["event"], e.body["sessionIds"]) for e in again] == [("nodeCrashed", [])]


def test_heartbeat_after_a_crash_of_a_disconnected_node_is_no_recovery() -> None:
    rig = disconnected()
    rig.advance(NODE, DEADLINE)
    assert rig.liveness(node_heartbeat(NODE, DEADLINE + 100)) == []


def test_no_node_recovered_after_a_blip() -> None:
    rig = disconnected()
    out = rig.liveness(node_connected(NODE, D_AT + 500))
    out += rig.liveness(node_connected(NODE, D_AT + 5000))
    out += rig.advance(NODE, FAR)
    assert emits(out, "cdr") == []


# -- R6 removal ---------------------------------------------------------------------------------


def status_bodies(at: int, old: str) -> list[dict]:
    base = {"timestamp": at, "id": NODE, **describe(NODE)}
    return [
        {"event": "mediaNodeStatusChanged", **base, "newStatus": "terminating", "oldStatus": old},
        {
            "event": "mediaNodeStatusChanged",
            **base,
            "newStatus": "terminated",
            "oldStatus": "terminating",
        },
    ]


@pytest.mark.parametrize("r", [0, 3])
def test_removal_within_grace_follows_the_cascade_at_once(r: int) -> None:
    rig = disconnected(removal(r))
    rig.session(NODE, session_created("ses_Alpha", T0 + 100, NODE))
    out = rig.advance(NODE, DEADLINE)
    assert events(out, "cdr") == [
        "nodeCrashed",
        "sessionDestroyed",
        "mediaNodeStatusChanged",
        "mediaNodeStatusChanged",
    ]
    changes = emits(out, "cdr")[2:]
    assert [e.body for e in changes] == status_bodies(DEADLINE, "running")
    assert all("reason" not in e.body for e in changes)
    assert {e.incident_id for e in changes} == {INCIDENT}
    for e in changes:
        validate(e)
    assert [e.body for e in emits(out, "nodes") if e.body["event"] == "nodeRemoved"] == [
        {"event": "nodeRemoved", "timestamp": DEADLINE, "id": NODE}
    ]


def test_removal_old_status_is_the_last_status_seen() -> None:
    rig = connected(removal(0))
    rig.liveness(node_status_changed(NODE, T0 + 1, "running", "waiting-idle-to-terminate"))
    rig.liveness(node_disconnected(NODE, D_AT))
    out = rig.advance(NODE, DEADLINE)
    changes = [e.body for e in emits(out, "cdr")][1:]
    assert changes == status_bodies(DEADLINE, "waiting-idle-to-terminate")


def test_removal_after_a_long_reconnection_timeout_waits_for_the_watermark() -> None:
    rig = disconnected(removal(10))
    assert events(rig.advance(NODE, DEADLINE), "cdr") == ["nodeCrashed"]
    assert rig.advance(NODE, D_AT + 9_999) == []
    out = rig.advance(NODE, D_AT + 10_000)
    assert [e.body for e in emits(out, "cdr")] == status_bodies(D_AT + 10_000, "running")
    assert events(out, "nodes") == ["nodeRemoved"]
    assert rig.advance(NODE, FAR) == []


def test_reconnection_before_removal_recovers_and_cancels_the_removal() -> None:
    rig = disconnected(removal(10))
    rig.advance(NODE, DEADLINE)
    out = rig.liveness(node_connected(NODE, D_AT + 9_999))
    out += rig.advance(NODE, FAR)
    assert events(out, "cdr") == ["nodeRecovered"]


def test_connection_after_removal_starts_a_new_life_without_node_recovered() -> None:
    rig = disconnected(removal(10))
    rig.advance(NODE, D_AT + 10_000)
    out = rig.liveness(node_connected(NODE, D_AT + 20_000))
    assert emits(out, "cdr") == []
    rig.liveness(node_disconnected(NODE, D_AT + 30_000))
    again = rig.advance(NODE, D_AT + 30_000 + GRACE_MS)
    assert events(again, "cdr") == ["nodeCrashed"]


def test_connection_stamped_after_removal_arriving_early_waits_for_the_removal() -> None:
    rig = disconnected(removal(10))
    rig.advance(NODE, DEADLINE)
    assert rig.liveness(node_connected(NODE, D_AT + 10_500)) == []  # held
    out = rig.advance(NODE, D_AT + 10_000)
    assert events(out, "cdr") == ["mediaNodeStatusChanged", "mediaNodeStatusChanged"]
    assert "nodeRecovered" not in events(rig.advance(NODE, FAR), "cdr")


def test_never_removed_by_default() -> None:
    rig = disconnected()
    rig.advance(NODE, DEADLINE)
    assert rig.advance(NODE, FAR) == []
    assert events(rig.liveness(node_connected(NODE, FAR)), "cdr") == ["nodeRecovered"]


# -- R7 planned shutdown ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["terminating", "terminated"])
def test_planned_shutdown_is_no_incident(status: str) -> None:
    rig = connected()
    out = rig.liveness(node_status_changed(NODE, D_AT - 100, "running", status))
    assert [e.body for e in emits(out, "cdr")] == [
        node_status_changed(NODE, D_AT - 100, "running", status)
    ]
    assert rig.liveness(node_disconnected(NODE, D_AT)) == []
    assert rig.advance(NODE, FAR) == []


def test_a_new_connection_ends_the_planned_shutdown() -> None:
    rig = connected()
    rig.liveness(node_status_changed(NODE, T0 + 1, "running", "terminating"))
    rig.liveness(node_connected(NODE, T0 + 2))
    rig.liveness(node_disconnected(NODE, D_AT))
    assert events(rig.advance(NODE, DEADLINE), "cdr") == ["nodeCrashed"]


def test_status_changes_are_copied_to_the_cdr_unchanged() -> None:
    rig = connected()
    change = node_status_changed(NODE, T0 + 5, "launching", "running")
    (copy,) = emits(rig.liveness(change), "cdr")
    assert (copy.key, copy.body, copy.media_node_id) == (NODE, change, NODE)
    validate(copy)


# -- staleEvent ---------------------------------------------------------------------------------


def test_liveness_stamped_before_the_latest_applied_is_stale_and_ignored() -> None:
    rig = disconnected()
    late = node_connected(NODE, D_AT - 1)
    out = rig.liveness(late)
    assert codes(out) == ["staleEvent"]
    assert rejects(out)[0].input.payload == late
    assert emits(out) == []
    assert events(rig.advance(NODE, DEADLINE), "cdr") == ["nodeCrashed"]


def test_a_replayed_liveness_record_is_skipped() -> None:
    rig = Rig()
    item = Input("liveness", node_disconnected(NODE, D_AT), LIVENESS_PARTITION, 7)
    assert events(rig.engine.on_liveness(NODE, item)) == ["incidentOpened"]
    assert rig.engine.on_liveness(NODE, item) == []


# -- R8 hold until decided ----------------------------------------------------------------------


def test_session_event_stamped_before_the_deadline_is_applied_before_the_cascade() -> None:
    rig = connected()
    rig.session(NODE, session_created("ses_Alpha", T0 + 100, NODE))
    rig.liveness(node_disconnected(NODE, D_AT))
    out = rig.session(NODE, participant_joined("ses_Alpha", "con_A", DEADLINE - 1))
    assert events(out, "cdr") == ["participantJoined"]
    cascade = events(rig.advance(NODE, DEADLINE), "cdr")
    assert cascade == ["nodeCrashed", "participantLeft", "sessionDestroyed"]


def test_session_event_stamped_at_the_deadline_is_held_then_stale_after_the_crash() -> None:
    rig = connected()
    rig.session(NODE, session_created("ses_Alpha", T0 + 100, NODE))
    rig.liveness(node_disconnected(NODE, D_AT))
    late = participant_joined("ses_Alpha", "con_A", DEADLINE)
    assert rig.session(NODE, late) == []
    out = rig.advance(NODE, DEADLINE)
    assert events(out, "cdr") == ["nodeCrashed", "sessionDestroyed"]
    assert codes(out) == ["staleAfterCrash"]
    assert rejects(out)[0].input.payload == late


def test_held_session_event_is_applied_and_copied_after_a_blip() -> None:
    rig = connected()
    rig.session(NODE, session_created("ses_Alpha", T0 + 100, NODE))
    rig.liveness(node_disconnected(NODE, D_AT))
    assert rig.session(NODE, participant_joined("ses_Alpha", "con_A", DEADLINE + 50)) == []
    out = rig.liveness(node_connected(NODE, DEADLINE - 100))
    assert [(e.stream, e.body["event"]) for e in emits(out)] == [
        ("nodes", "incidentClosed"),
        ("cdr", "participantJoined"),
    ]
    copy = emits(out, "cdr")[0].body
    assert (copy["connectionId"], copy["timestamp"]) == ("con_A", DEADLINE + 50)
    assert codes(out) == []


def test_held_liveness_events_are_applied_in_arrival_order_after_the_decision() -> None:
    rig = disconnected()
    assert rig.liveness(node_heartbeat(NODE, DEADLINE + 10)) == []
    assert rig.liveness(node_connected(NODE, DEADLINE + 20)) == []
    out = rig.advance(NODE, DEADLINE)
    assert events(out, "cdr") == ["nodeCrashed", "nodeRecovered"]
    assert emits(out, "cdr")[1].body["timestamp"] == DEADLINE + 20


# -- R8 with silence and removal: the outcome never depends on when the watermark moved ---------


def silent_crash_input(rig: Rig, early: bool) -> list:
    rig.session(NODE, session_created("ses_Alpha", T0 + 100, NODE))
    out = rig.advance(NODE, SILENT_D) if early else []
    return out + rig.session(NODE, participant_joined("ses_Alpha", "con_A", SILENT_DEADLINE + 1))


@pytest.mark.parametrize("early", [True, False], ids=["watermark-first", "input-first"])
def test_session_input_past_a_possible_silence_waits_for_the_decision(early: bool) -> None:
    rig = heartbeating()
    out = silent_crash_input(rig, early)
    assert emits(out, "cdr") == []  # held: the node may be silent since LAST
    out += rig.advance(NODE, SILENT_DEADLINE)
    assert events(out, "cdr") == ["nodeCrashed", "sessionDestroyed"]
    assert codes(out) == ["staleAfterCrash"]


def test_a_sign_of_life_releases_session_input_held_for_a_possible_silence() -> None:
    rig = heartbeating()
    silent_crash_input(rig, early=False)
    out = rig.liveness(node_heartbeat(NODE, LAST + 500))  # no silence after all
    assert [(e.body["event"], e.body.get("connectionId")) for e in emits(out)] == [
        ("participantJoined", "con_A")
    ]
    assert events(rig.advance(NODE, SILENT_DEADLINE + 2), "cdr") == []


def removal_then_new_life(rig: Rig, early: bool) -> list:
    """r = 10: crashed at D, removed at d + 10 s; it comes back, hosts a session and drops."""
    removed_at, back = D_AT + 10_000, D_AT + 10_500
    out = rig.advance(NODE, DEADLINE)
    out += rig.liveness(node_connected(NODE, back))
    out += rig.session(NODE, session_created("ses_New", back + 100, NODE))
    out += rig.liveness(node_disconnected(NODE, back + 200))
    if early:
        out += rig.advance(NODE, removed_at)
    out += rig.session(NODE, participant_joined("ses_New", "con_Late", back + 200 + GRACE_MS))
    return out + rig.advance(NODE, FAR)


def test_session_input_after_a_pending_removal_waits_for_the_removal() -> None:
    runs = []
    for early in (True, False):
        rig = disconnected(removal(10))
        out = removal_then_new_life(rig, early)
        runs.append([(e.key, e.body) for e in emits(out, "cdr")])
        assert codes(out) == ["staleAfterCrash"]
    assert runs[0] == runs[1]
    second_crash = [b for _, b in runs[0] if b["event"] == "nodeCrashed"][1]
    assert second_crash["sessionIds"] == ["ses_New"]
    assert "participantLeft" not in [b["event"] for _, b in runs[0]]
