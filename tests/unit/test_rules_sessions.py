"""Session lifecycle input (CONTRACT §4), its CDR copies and its dead letters (§6, §11)."""

from __future__ import annotations

from typing import Any

import pytest

from services.core.rules import Input
from services.core.schemas import compiled_validator
from tests.support import openvidu_keys as ov
from tests.support.openvidu_keys import with_event
from tests.support.rules_builders import (
    GRACE_MS,
    SESSIONS_PARTITION,
    T0,
    Payload,
    Rig,
    broadcast_started,
    codes,
    connection_destroyed,
    emits,
    events,
    inbound_created,
    node_connected,
    node_disconnected,
    node_heartbeat,
    node_status_changed,
    outbound_created,
    participant_joined,
    participant_left,
    recording_started,
    rejects,
    session_created,
    session_destroyed,
    signal_sent,
    validate,
)

NODE = "media_i-0a1b2c3d4e5f60001"
OTHER = "media_i-0f1e2d3c4b5a60002"
SID = "ses_Jd8tUyvhXO"
CREATED = T0 + 1_000
USID = f"{SID}_{CREATED}"
ALICE, BOB = "con_EIeO06zgMz", "con_ThN5Rgi8Y8"
D_AT = T0 + 60_000
DEADLINE = D_AT + GRACE_MS


def with_session() -> Rig:
    rig = Rig()
    rig.liveness(node_connected(NODE, T0))
    rig.session(NODE, session_created(SID, CREATED, NODE))
    return rig


def with_participants() -> Rig:
    rig = with_session()
    rig.session(NODE, participant_joined(SID, ALICE, T0 + 2_000))
    rig.session(NODE, participant_joined(SID, BOB, T0 + 2_500))
    return rig


def crashed(rig: Rig) -> list[Any]:
    rig.liveness(node_disconnected(NODE, D_AT))
    return rig.advance(NODE, DEADLINE)


def copy_of(rig: Rig, payload: Payload) -> dict[str, Any]:
    out = rig.session(NODE, payload)
    assert codes(out) == []
    (copy,) = emits(out)
    assert (copy.stream, copy.key, copy.media_node_id, copy.incident_id) == (
        "cdr",
        SID,
        NODE,
        None,
    )
    validate(copy)
    return copy.body


# -- builders produce valid input ---------------------------------------------------------------

INPUTS = [
    ("liveness", node_connected(NODE, T0)),
    ("liveness", node_connected(NODE, T0, described=False)),
    ("liveness", node_disconnected(NODE, T0)),
    ("liveness", node_heartbeat(NODE, T0)),
    ("liveness", node_status_changed(NODE, T0, "launching", "running")),
    ("session", session_created(SID, T0, NODE)),
    ("session", session_destroyed(SID, T0 + 5_000, T0)),
    ("session", participant_joined(SID, ALICE, T0)),
    ("session", participant_left(SID, ALICE, T0 + 5_000, T0)),
    ("session", outbound_created(SID, ALICE, T0)),
    ("session", outbound_created(SID, ALICE, T0, video=False)),
    ("session", inbound_created(SID, BOB, ALICE, T0)),
    ("session", connection_destroyed(inbound_created(SID, BOB, ALICE, T0), T0 + 5_000)),
    ("session", recording_started(SID, T0)),
    ("session", broadcast_started(SID, T0)),
    ("session", signal_sent(SID, T0, ALICE, [BOB])),
]


@pytest.mark.parametrize(("kind", "payload"), INPUTS, ids=[p["event"] for _, p in INPUTS])
def test_builders_produce_valid_input(kind: str, payload: Payload) -> None:
    compiled_validator(kind, str(payload["event"]))(payload)
    assert "uniqueSessionId" not in payload
    assert "participantId" not in payload


# -- CDR copies (CONTRACT §4) -------------------------------------------------------------------


def test_session_created_copy_drops_media_node_id_and_adds_unique_session_id() -> None:
    rig = Rig()
    body = copy_of(rig, session_created(SID, CREATED, NODE))
    assert body == {
        "event": "sessionCreated",
        "timestamp": CREATED,
        "sessionId": SID,
        "uniqueSessionId": USID,
    }


def test_participant_joined_copy_adds_unique_session_id_and_participant_id() -> None:
    rig = with_session()
    joined = participant_joined(SID, ALICE, T0 + 2_000)
    body = copy_of(rig, joined)
    assert body == {**joined, "uniqueSessionId": USID, "participantId": ALICE}
    assert set(body) == {
        "event",
        "sessionId",
        "uniqueSessionId",
        "timestamp",
        "participantId",
        "connectionId",
        "location",
        "ip",
        "platform",
        "clientData",
        "serverData",
    }


def test_media_connection_copies_have_openvidu_key_sets() -> None:
    rig = with_participants()
    outbound = copy_of(rig, outbound_created(SID, ALICE, T0 + 3_000))
    inbound = copy_of(rig, inbound_created(SID, BOB, ALICE, T0 + 3_100))
    audio_only = copy_of(rig, outbound_created(SID, BOB, T0 + 3_200, video=False))
    outbound_keys = with_event(ov.WEBRTC_OUTBOUND_VIDEO)
    assert set(outbound) == outbound_keys
    assert set(inbound) == outbound_keys | {"receivingFrom"}
    assert set(audio_only) == outbound_keys - {"videoSource", "videoFramerate", "videoDimensions"}
    assert (inbound["participantId"], inbound["receivingFrom"]) == (BOB, ALICE)


def test_recording_started_copy_has_the_individual_key_set() -> None:
    rig = with_session()
    started = recording_started(SID, T0 + 4_000)
    body = copy_of(rig, started)
    assert body == {**started, "uniqueSessionId": USID}
    assert set(body) == {
        "event",
        "sessionId",
        "uniqueSessionId",
        "timestamp",
        "startTime",
        "duration",
        "id",
        "name",
        "outputMode",
        "hasAudio",
        "hasVideo",
        "size",
        "status",
    }
    assert (body["size"], body["duration"], body["startTime"]) == (0, 0, body["timestamp"])


def test_broadcast_and_signal_copies_only_gain_the_unique_session_id() -> None:
    rig = with_participants()
    for payload in (broadcast_started(SID, T0 + 4_000), signal_sent(SID, T0 + 4_100, None, [BOB])):
        assert copy_of(rig, payload) == {**payload, "uniqueSessionId": USID}


def test_an_input_unique_session_id_is_kept() -> None:
    rig = with_session()
    joined = {**participant_joined(SID, ALICE, T0 + 2_000), "uniqueSessionId": USID}
    joined["participantId"] = ALICE
    assert copy_of(rig, joined) == joined


def test_end_events_are_copied_as_received() -> None:
    rig = with_participants()
    created = outbound_created(SID, ALICE, T0 + 3_000)
    rig.session(NODE, created)
    closed = connection_destroyed(created, T0 + 9_000)
    assert copy_of(rig, closed) == {**closed, "uniqueSessionId": USID, "participantId": ALICE}
    left = participant_left(SID, ALICE, T0 + 9_500, T0 + 2_000)
    assert copy_of(rig, left) == {**left, "uniqueSessionId": USID, "participantId": ALICE}
    destroyed = session_destroyed(SID, T0 + 9_900, CREATED)
    assert copy_of(rig, destroyed) == {**destroyed, "uniqueSessionId": USID}


def test_copies_keep_input_order() -> None:
    rig = with_session()
    payloads = [
        participant_joined(SID, ALICE, T0 + 2_000),
        signal_sent(SID, T0 + 1_900, ALICE, [ALICE]),  # stamped earlier, arrives later
        participant_joined(SID, BOB, T0 + 2_100),
    ]
    out = rig.sessions(NODE, payloads)
    assert [(e.body["event"], e.body["timestamp"]) for e in emits(out)] == [
        (p["event"], p["timestamp"]) for p in payloads
    ]


# -- dead letters (CONTRACT §11) ----------------------------------------------------------------


def assert_rejected(out: list[Any], code: str, payload: Payload) -> None:
    assert emits(out) == []
    assert [(r.code, r.input.payload) for r in rejects(out)] == [(code, payload)]
    assert rejects(out)[0].detail


def test_event_of_a_session_never_created_is_unknown_session() -> None:
    rig = Rig()
    joined = participant_joined(SID, ALICE, T0)
    assert_rejected(rig.session(NODE, joined), "unknownSession", joined)


def test_event_of_a_destroyed_session_is_unknown_session() -> None:
    rig = with_session()
    rig.session(NODE, session_destroyed(SID, T0 + 3_000, CREATED))
    joined = participant_joined(SID, ALICE, T0 + 4_000)
    assert_rejected(rig.session(NODE, joined), "unknownSession", joined)


@pytest.mark.parametrize(
    "payload",
    [
        outbound_created(SID, "con_Stranger", T0 + 3_000),
        participant_left(SID, "con_Stranger", T0 + 3_000, T0 + 2_000),
        connection_destroyed(outbound_created(SID, ALICE, T0 + 2_900), T0 + 3_000),
    ],
    ids=["connection of a stranger", "stranger leaves", "connection never opened"],
)
def test_unknown_connection(payload: Payload) -> None:
    rig = with_participants()
    assert_rejected(rig.session(NODE, payload), "unknownConnection", payload)


def test_a_rejected_event_changes_nothing() -> None:
    rig = with_participants()
    rig.session(NODE, outbound_created(SID, "con_Stranger", T0 + 3_000))
    out = crashed(rig)
    assert "webrtcConnectionDestroyed" not in events(out)


def test_creating_an_open_session_again_is_session_already_open() -> None:
    rig = with_session()
    again = session_created(SID, CREATED + 1, NODE)
    assert_rejected(rig.session(NODE, again), "sessionAlreadyOpen", again)


DUPLICABLE = [
    session_created(SID, CREATED, NODE),
    participant_joined(SID, "con_Carol", T0 + 2_700),
    outbound_created(SID, ALICE, T0 + 3_000),
    recording_started(SID, T0 + 4_000),
    broadcast_started(SID, T0 + 4_500),
    signal_sent(SID, T0 + 5_000, ALICE, [BOB]),
]


@pytest.mark.parametrize("payload", DUPLICABLE, ids=[p["event"] for p in DUPLICABLE])
def test_the_same_event_twice_is_a_duplicate(payload: Payload) -> None:
    rig = with_participants()
    if payload["event"] != "sessionCreated":
        assert codes(rig.session(NODE, payload)) == []
    assert_rejected(rig.session(NODE, payload), "duplicate", payload)


def test_a_duplicate_has_no_second_effect() -> None:
    rig = with_participants()
    created = outbound_created(SID, ALICE, T0 + 3_000)
    rig.sessions(NODE, [created, created, participant_joined(SID, ALICE, T0 + 2_000)])
    cascade = events(crashed(rig), "cdr")
    assert cascade.count("participantLeft") == 2
    assert cascade.count("webrtcConnectionDestroyed") == 1


def test_re_processing_a_destroyed_and_recreated_session_writes_nothing() -> None:
    """R9: re-processing after a restart never decides again, even when the store no longer
    holds the sessions those records were about."""
    rig = with_participants()
    crashed(rig)
    rig.liveness(node_connected(NODE, DEADLINE + 100))
    again = DEADLINE + 5_000
    records = [
        Input("session", payload, SESSIONS_PARTITION, offset)
        for offset, payload in enumerate(
            [
                session_created(SID, again, NODE),
                participant_joined(SID, "con_New", again + 100),
                session_created(SID, again + 150, NODE),  # sessionAlreadyOpen
                participant_left(SID, "con_New", again + 200, again + 100),
                session_destroyed(SID, again + 300, again),
            ],
            start=1_000,
        )
    ]
    first = [out for item in records for out in rig.engine.on_session(NODE, item)]
    assert events(first) == [
        "sessionCreated",
        "participantJoined",
        "participantLeft",
        "sessionDestroyed",
    ]
    assert codes(first) == ["sessionAlreadyOpen"]
    assert [out for item in records for out in rig.engine.on_session(NODE, item)] == []


def test_a_replayed_session_record_is_skipped() -> None:
    rig = with_session()
    item = Input("session", participant_joined(SID, ALICE, T0 + 2_000), SESSIONS_PARTITION, 500)
    assert events(rig.engine.on_session(NODE, item)) == ["participantJoined"]
    assert rig.engine.on_session(NODE, item) == []


# -- after a crash (CONTRACT §6) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        participant_joined(SID, "con_Late", DEADLINE),
        participant_left(SID, ALICE, DEADLINE + 10, T0 + 2_000),
        signal_sent(SID, DEADLINE + 20, ALICE, [BOB]),
        session_destroyed(SID, DEADLINE + 30, CREATED),
    ],
    ids=lambda p: p["event"],
)
def test_input_for_a_session_closed_by_the_crash_is_stale_after_crash(payload: Payload) -> None:
    rig = with_participants()
    crashed(rig)
    assert_rejected(rig.session(NODE, payload), "staleAfterCrash", payload)


def test_input_for_a_crashed_session_is_stale_even_after_the_node_recovers() -> None:
    rig = with_participants()
    crashed(rig)
    rig.liveness(node_connected(NODE, DEADLINE + 100))
    joined = participant_joined(SID, "con_Late", DEADLINE + 200)
    assert_rejected(rig.session(NODE, joined), "staleAfterCrash", joined)


def test_recreating_a_session_after_a_crash_starts_a_new_incarnation() -> None:
    rig = with_participants()
    crashed(rig)
    rig.liveness(node_connected(NODE, DEADLINE + 100))
    again = DEADLINE + 5_000
    body = copy_of(rig, session_created(SID, again, NODE))
    assert body["uniqueSessionId"] == f"{SID}_{again}" != USID
    joined = copy_of(rig, participant_joined(SID, "con_New", again + 100))
    assert joined["uniqueSessionId"] == f"{SID}_{again}"


def test_recreating_a_session_on_another_node_after_a_crash() -> None:
    rig = with_participants()
    rig.liveness(node_connected(OTHER, T0))
    crashed(rig)
    out = rig.session(OTHER, session_created(SID, DEADLINE + 2_000, OTHER))
    (copy,) = emits(out)
    assert (copy.media_node_id, copy.body["uniqueSessionId"]) == (
        OTHER,
        f"{SID}_{DEADLINE + 2_000}",
    )


def test_a_normally_closed_session_is_not_in_the_cascade() -> None:
    rig = with_session()
    rig.session(NODE, session_created("ses_Stays", CREATED + 1, NODE))
    rig.session(NODE, session_destroyed(SID, T0 + 3_000, CREATED))
    out = crashed(rig)
    assert emits(out, "cdr")[0].body["sessionIds"] == ["ses_Stays"]
    assert {e.body["sessionId"] for e in emits(out, "cdr")[1:]} == {"ses_Stays"}


def test_stopped_recordings_and_broadcasts_are_not_in_the_cascade() -> None:
    rig = with_session()
    started = recording_started(SID, T0 + 2_000)
    broadcast = broadcast_started(SID, T0 + 2_100)
    rig.sessions(
        NODE,
        [
            started,
            broadcast,
            {
                **started,
                "timestamp": T0 + 3_000,
                "status": "stopped",
                "reason": "recordingStoppedByServer",
            },
            {
                **broadcast,
                "event": "broadcastStopped",
                "timestamp": T0 + 3_100,
                "startTime": T0 + 2_100,
                "duration": 1,
                "reason": "broadcastStoppedByServer",
            },
        ],
    )
    out = crashed(rig)
    head = emits(out, "cdr")[0].body
    assert (head["recordingIds"], head["broadcasts"]) == ([], [])
    assert events(out, "cdr") == ["nodeCrashed", "sessionDestroyed"]


def test_a_participant_who_left_takes_its_connections_along() -> None:
    rig = with_participants()
    rig.sessions(
        NODE,
        [
            outbound_created(SID, ALICE, T0 + 3_000),
            inbound_created(SID, BOB, ALICE, T0 + 3_100),
            participant_left(SID, ALICE, T0 + 4_000, T0 + 2_000),
        ],
    )
    cascade = [(e.body["event"], e.body.get("connectionId")) for e in emits(crashed(rig), "cdr")]
    assert cascade == [
        ("nodeCrashed", None),
        ("participantLeft", BOB),
        ("sessionDestroyed", None),
    ]


def test_held_session_input_is_not_taken_for_a_held_liveness_record_at_the_same_offset() -> None:
    """A liveness and a sessions record may share partition and offset; holding one during an
    incident must not make the rules think the other is held already (found by the fault
    matrix: the session record was dropped, its later records dead-lettered)."""
    from services.core.rules import NodeEngine, RuleSettings
    from services.core.rules.ports import InMemoryRulesStore

    engine = NodeEngine(InMemoryRulesStore(), RuleSettings(grace_ms=GRACE_MS))
    engine.on_liveness(NODE, Input("liveness", node_connected(NODE, T0), 0, 1))
    engine.on_liveness(NODE, Input("liveness", node_disconnected(NODE, T0 + 1000), 0, 2))
    engine.on_liveness(NODE, Input("liveness", node_connected(NODE, T0 + 5000), 0, 3))
    engine.on_liveness(NODE, Input("liveness", node_heartbeat(NODE, T0 + 5500), 0, 7))
    engine.on_session(NODE, Input("session", session_created("s1", T0 + 6000, NODE), 0, 7))
    engine.on_session(NODE, Input("session", participant_joined("s1", "c1", T0 + 6100), 0, 8))
    outputs = engine.advance(NODE, T0 + 7000)
    assert "sessionCreated" in events(outputs, "cdr")
    assert "participantJoined" in events(outputs, "cdr")
    assert codes(outputs) == []
