"""The crash cascade exactly as CONTRACT §6 and the client notices of §9.

The scenario of the issue: a node hosting two sessions. Session A has two participants, each
publishing (OUTBOUND) and subscribing to the other (INBOUND), an INDIVIDUAL recording and a
broadcast; session B has three participants. The node disconnects and stays down.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.core.rules import Emit, Input, RuleSettings
from services.core.schemas import compiled_validator
from tests.support import openvidu_keys as ov
from tests.support.openvidu_keys import with_event
from tests.support.rules_builders import (
    GRACE_MS,
    T0,
    Rig,
    broadcast_started,
    connection_destroyed,
    describe,
    emits,
    events,
    inbound_created,
    node_connected,
    node_disconnected,
    outbound_created,
    participant_joined,
    participant_left,
    recording_started,
    rejects,
    session_created,
    stream_id,
    validate,
)

NODE = "media_i-0crashed0000000001"
BUSY = "media_i-0busy00000000000002"  # running, hosting one session
IDLE = "media_i-0idle00000000000003"  # running, empty: the suggestion
A, B, ELSEWHERE = "ses_Alpha", "ses_Bravo", "ses_Elsewhere"
A1, A2 = "con_A1xxxxxxxx", "con_A2xxxxxxxx"
# B's participants join in an order different from their ids' order; two join at the same time.
B_FIRST, B_TIE_LOW, B_TIE_HIGH = "con_Bzz", "con_Baa", "con_Bmm"

A_CREATED = T0 + 1_234
B_CREATED = T0 + 1_500
A1_JOINED, A2_JOINED = T0 + 2_001, T0 + 2_500
B_FIRST_JOINED, B_TIE_JOINED = T0 + 5_800, T0 + 6_000
D_AT = T0 + 10_000
DEADLINE = D_AT + GRACE_MS
INCIDENT = f"{NODE}_{D_AT}"

A1_OUT = outbound_created(A, A1, T0 + 3_000)
A2_OUT = outbound_created(A, A2, T0 + 3_500)
A2_FROM_A1 = inbound_created(A, A2, A1, T0 + 4_000)
A1_FROM_A2 = inbound_created(A, A1, A2, T0 + 4_200)
RECORDING = recording_started(A, T0 + 5_000)
BROADCAST = broadcast_started(A, T0 + 5_500)

# OpenVidu's exact key sets (reference §12), `event` included.
SESSION_DESTROYED_KEYS = with_event(ov.SESSION | ov.ENDED)
PARTICIPANT_LEFT_KEYS = with_event(ov.PARTICIPANT | ov.ENDED)
OUTBOUND_DESTROYED_KEYS = with_event(ov.WEBRTC_OUTBOUND_VIDEO | ov.ENDED)
INBOUND_DESTROYED_KEYS = with_event(ov.WEBRTC_INBOUND_VIDEO | ov.ENDED)
RECORDING_STOPPED_KEYS = with_event(ov.RECORDING_STARTED | {"reason"})
BROADCAST_STOPPED_KEYS = with_event(ov.BROADCAST_STARTED | ov.ENDED)
NODE_CRASHED_KEYS = with_event(ov.NODE_CRASHED)
NODE_STATUS_KEYS = with_event(ov.NODE_STATUS)
NOTICE_KEYS = with_event(ov.NOTICE)

KEYS = {
    "event",
    "sessionId",
    "uniqueSessionId",
    "timestamp",
    "startTime",
    "duration",
    "reason",
}
PARTICIPANT_LEFT_KEYS = {
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
    "startTime",
    "duration",
    "reason",
}
OUTBOUND_DESTROYED_KEYS = {
    "event",
    "sessionId",
    "uniqueSessionId",
    "timestamp",
    "streamId",
    "participantId",
    "connectionId",
    "connection",
    "videoSource",
    "videoFramerate",
    "videoDimensions",
    "audioEnabled",
    "videoEnabled",
    "startTime",
    "duration",
    "reason",
}
INBOUND_DESTROYED_KEYS = OUTBOUND_DESTROYED_KEYS | {"receivingFrom"}
RECORDING_STOPPED_KEYS = {
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
    "reason",
}
BROADCAST_STOPPED_KEYS = {
    "event",
    "sessionId",
    "uniqueSessionId",
    "timestamp",
    "broadcastUrl",
    "startTime",
    "duration",
    "reason",
}
NODE_CRASHED_KEYS = {
    "event",
    "timestamp",
    "id",
    "environmentId",
    "ip",
    "uri",
    "clusterId",
    "nodeRole",
    "sessionIds",
    "recordingIds",
    "broadcasts",
    "timeOfDisconnection",
}
NODE_STATUS_KEYS = {
    "event",
    "timestamp",
    "id",
    "environmentId",
    "ip",
    "uri",
    "clusterId",
    "newStatus",
    "oldStatus",
}
NOTICE_KEYS = {
    "event",
    "timestamp",
    "sessionId",
    "uniqueSessionId",
    "connectionId",
    "reason",
    "suggestedMediaNodeId",
}

KEYS = {
    "sessionDestroyed": SESSION_DESTROYED_KEYS,
    "participantLeft": PARTICIPANT_LEFT_KEYS,
    "recordingStatusChanged": RECORDING_STOPPED_KEYS,
    "broadcastStopped": BROADCAST_STOPPED_KEYS,
    "nodeCrashed": NODE_CRASHED_KEYS,
    "mediaNodeStatusChanged": NODE_STATUS_KEYS,
    "sessionDisconnected": NOTICE_KEYS,
}


def cluster(settings: RuleSettings | None = None) -> Rig:
    """The issue's cluster, up to the disconnection of NODE (not decided yet)."""
    rig = Rig(settings)
    for node in (NODE, BUSY, IDLE):
        rig.liveness(node_connected(node, T0))
    rig.session(BUSY, session_created(ELSEWHERE, T0 + 100, BUSY))
    rig.sessions(
        NODE,
        [
            session_created(A, A_CREATED, NODE),
            session_created(B, B_CREATED, NODE),
            participant_joined(A, A1, A1_JOINED),
            participant_joined(A, A2, A2_JOINED),
            A1_OUT,
            A2_OUT,
            A2_FROM_A1,
            A1_FROM_A2,
            RECORDING,
            BROADCAST,
            participant_joined(B, B_FIRST, B_FIRST_JOINED),
            participant_joined(B, B_TIE_HIGH, B_TIE_JOINED),
            participant_joined(B, B_TIE_LOW, B_TIE_JOINED),
        ],
    )
    rig.liveness(node_disconnected(NODE, D_AT))
    return rig


def crash(settings: RuleSettings | None = None) -> list[Emit]:
    return emits(cluster(settings).advance(NODE, DEADLINE))


def cdr_and_notices(out: list[Emit]) -> list[Emit]:
    return [e for e in out if e.stream in ("cdr", "notifications")]


def who(body: dict[str, Any]) -> tuple[str | None, ...]:
    return (
        body["event"],
        body.get("connectionId"),
        body.get("connection"),
        body.get("receivingFrom"),
    )


EXPECTED_ORDER = [
    ("nodeCrashed", None, None, None),
    # session A, participant A1 (joined first): who receives from A1, what A1 receives, A1's own
    ("webrtcConnectionDestroyed", A2, "INBOUND", A1),
    ("webrtcConnectionDestroyed", A1, "INBOUND", A2),
    ("webrtcConnectionDestroyed", A1, "OUTBOUND", None),
    ("participantLeft", A1, None, None),
    ("sessionDisconnected", A1, None, None),
    # participant A2: both INBOUND connections are already destroyed
    ("webrtcConnectionDestroyed", A2, "OUTBOUND", None),
    ("participantLeft", A2, None, None),
    ("sessionDisconnected", A2, None, None),
    ("recordingStatusChanged", None, None, None),
    ("broadcastStopped", None, None, None),
    ("sessionDestroyed", None, None, None),
    # session B: by join time, ties by connectionId
    ("participantLeft", B_FIRST, None, None),
    ("sessionDisconnected", B_FIRST, None, None),
    ("participantLeft", B_TIE_LOW, None, None),
    ("sessionDisconnected", B_TIE_LOW, None, None),
    ("participantLeft", B_TIE_HIGH, None, None),
    ("sessionDisconnected", B_TIE_HIGH, None, None),
    ("sessionDestroyed", None, None, None),
]


def test_cascade_order_is_exactly_the_contracts() -> None:
    assert [who(e.body) for e in cdr_and_notices(crash())] == EXPECTED_ORDER


def test_cascade_counts() -> None:
    cdr = events(crash(), "cdr")
    assert {name: cdr.count(name) for name in set(cdr)} == {
        "nodeCrashed": 1,
        "webrtcConnectionDestroyed": 4,
        "participantLeft": 5,
        "recordingStatusChanged": 1,
        "broadcastStopped": 1,
        "sessionDestroyed": 2,
    }
    assert events(crash(), "notifications") == ["sessionDisconnected"] * 5


def test_each_media_connection_is_destroyed_once() -> None:
    destroyed = [
        (e.body["connectionId"], e.body["streamId"])
        for e in crash()
        if e.body["event"] == "webrtcConnectionDestroyed"
    ]
    assert sorted(destroyed) == sorted(
        [(A1, stream_id(A1)), (A2, stream_id(A2)), (A2, stream_id(A1)), (A1, stream_id(A2))]
    )


def test_every_cascade_record_is_stamped_at_the_deadline_with_reason_node_crashed() -> None:
    cascade = cdr_and_notices(crash())[1:]
    assert {e.body["timestamp"] for e in cascade} == {DEADLINE}
    assert {e.body["reason"] for e in cascade} == {"nodeCrashed"}


def test_every_crash_record_carries_the_incident_id_and_node() -> None:
    out = crash()
    assert {(e.incident_id, e.media_node_id) for e in out} == {(INCIDENT, NODE)}
    keys = [(e.stream, e.key) for e in cdr_and_notices(out)]
    assert keys[0] == ("cdr", NODE)
    assert {key for stream, key in keys[1:]} == {A, B}


def test_node_crashed_lists_sessions_recordings_and_broadcasts_sorted() -> None:
    head = crash()[0]
    assert head.body == {
        "event": "nodeCrashed",
        "timestamp": DEADLINE,
        "id": NODE,
        **describe(NODE),
        "nodeRole": "medianode",
        "sessionIds": [A, B],
        "recordingIds": [A],
        "broadcasts": [A],
        "timeOfDisconnection": D_AT,
    }


def test_cascade_bodies_have_openvidu_key_sets() -> None:
    for e in cdr_and_notices(crash()):
        body = e.body
        if body["event"] == "webrtcConnectionDestroyed":
            expected = (
                INBOUND_DESTROYED_KEYS
                if body["connection"] == "INBOUND"
                else OUTBOUND_DESTROYED_KEYS
            )
        else:
            expected = KEYS[body["event"]]
        assert set(body) == expected, body["event"]


def test_every_body_validates_against_its_schema() -> None:
    out = crash()
    for e in out:
        validate(e)
    kinds = {(e.stream, e.body["event"]) for e in out}
    assert ("notifications", "sessionDisconnected") in kinds
    assert ("nodes", "incidentClosed") in kinds
    notice = next(e for e in out if e.stream == "notifications")
    compiled_validator("notice", "sessionDisconnected")(notice.body)


def test_start_times_and_whole_second_durations() -> None:
    usid_a, usid_b = f"{A}_{A_CREATED}", f"{B}_{B_CREATED}"
    got = [
        (
            e.body["event"],
            e.body.get("connectionId") or e.body["sessionId"],
            e.body["uniqueSessionId"],
            e.body["startTime"],
            e.body["duration"],
        )
        for e in crash()[2:]
        if e.stream == "cdr"
    ]
    assert got == [
        ("webrtcConnectionDestroyed", A2, usid_a, T0 + 4_000, 9),  # 9 000 ms
        ("webrtcConnectionDestroyed", A1, usid_a, T0 + 4_200, 8),  # 8 800 ms, truncated
        ("webrtcConnectionDestroyed", A1, usid_a, T0 + 3_000, 10),
        ("participantLeft", A1, usid_a, A1_JOINED, 10),  # 10 999 ms
        ("webrtcConnectionDestroyed", A2, usid_a, T0 + 3_500, 9),
        ("participantLeft", A2, usid_a, A2_JOINED, 10),
        ("recordingStatusChanged", A, usid_a, RECORDING["startTime"], 0),
        ("broadcastStopped", A, usid_a, BROADCAST["timestamp"], 7),
        ("sessionDestroyed", A, usid_a, A_CREATED, 11),  # 11 766 ms
        ("participantLeft", B_FIRST, usid_b, B_FIRST_JOINED, 7),
        ("participantLeft", B_TIE_LOW, usid_b, B_TIE_JOINED, 7),
        ("participantLeft", B_TIE_HIGH, usid_b, B_TIE_JOINED, 7),
        ("sessionDestroyed", B, usid_b, B_CREATED, 11),
    ]


def test_closing_records_keep_the_fields_of_their_opening_records() -> None:
    out = crash()
    left = next(e.body for e in out if e.body["event"] == "participantLeft")
    joined = participant_joined(A, A1, A1_JOINED)
    assert {k: left[k] for k in joined if k not in ("event", "timestamp")} == {
        k: v for k, v in joined.items() if k not in ("event", "timestamp")
    }
    assert left["participantId"] == A1
    inbound = next(e.body for e in out if e.body.get("connection") == "INBOUND")
    assert {k: inbound[k] for k in A2_FROM_A1 if k not in ("event", "timestamp")} == {
        k: v for k, v in A2_FROM_A1.items() if k not in ("event", "timestamp")
    }
    broadcast = next(e.body for e in out if e.body["event"] == "broadcastStopped")
    assert broadcast["broadcastUrl"] == BROADCAST["broadcastUrl"]


def test_an_active_recording_is_stopped_never_ready() -> None:
    (stopped,) = [e.body for e in crash() if e.body["event"] == "recordingStatusChanged"]
    assert stopped == {
        "event": "recordingStatusChanged",
        "timestamp": DEADLINE,
        "sessionId": A,
        "uniqueSessionId": f"{A}_{A_CREATED}",
        "startTime": RECORDING["startTime"],
        "duration": 0,
        "id": A,
        "name": "MyRecording",
        "outputMode": "INDIVIDUAL",
        "hasAudio": True,
        "hasVideo": True,
        "size": 0,
        "status": "stopped",
        "reason": "nodeCrashed",
    }


def test_a_notice_follows_each_participant_left_and_suggests_the_emptiest_node() -> None:
    out = cdr_and_notices(crash())
    for i, e in enumerate(out):
        if e.body["event"] == "participantLeft":
            notice = out[i + 1]
            assert notice.stream == "notifications"
            assert notice.key == e.body["sessionId"]
            assert notice.body == {
                "event": "sessionDisconnected",
                "timestamp": DEADLINE,
                "sessionId": e.body["sessionId"],
                "uniqueSessionId": e.body["uniqueSessionId"],
                "connectionId": e.body["connectionId"],
                "reason": "nodeCrashed",
                "suggestedMediaNodeId": IDLE,
            }


def suggestion(rig: Rig) -> set[str | None]:
    out = rig.advance(NODE, DEADLINE)
    return {e.body["suggestedMediaNodeId"] for e in emits(out, "notifications")}


def test_suggestion_ties_are_broken_by_node_id() -> None:
    rig = cluster()
    rig.session(IDLE, session_created("ses_Other", T0 + 200, IDLE))  # IDLE and BUSY: one each
    assert suggestion(rig) == {BUSY}  # "media_i-0busy…" < "media_i-0idle…"


def test_nodes_in_grace_or_crashed_are_not_suggested() -> None:
    rig = cluster()
    rig.liveness(node_disconnected(IDLE, D_AT + 1))  # IDLE is in grace at NODE's deadline
    assert suggestion(rig) == {BUSY}


def test_no_suggestion_when_no_node_is_running() -> None:
    rig = cluster()
    rig.liveness(node_disconnected(IDLE, D_AT))
    rig.liveness(node_disconnected(BUSY, D_AT))
    assert suggestion(rig) == {None}


def test_sessions_are_closed_by_creation_time_then_id() -> None:
    rig = Rig()
    rig.liveness(node_connected(NODE, T0))
    rig.sessions(
        NODE,
        [
            session_created("ses_C", T0 + 30, NODE),
            session_created("ses_Z", T0 + 10, NODE),
            session_created("ses_Y", T0 + 10, NODE),
        ],
    )
    rig.liveness(node_disconnected(NODE, D_AT))
    out = rig.advance(NODE, DEADLINE)
    assert [e.body["sessionId"] for e in emits(out, "cdr")[1:]] == ["ses_Y", "ses_Z", "ses_C"]
    assert emits(out, "cdr")[0].body["sessionIds"] == ["ses_C", "ses_Y", "ses_Z"]


def test_an_empty_session_is_still_destroyed() -> None:
    rig = Rig()
    rig.liveness(node_connected(NODE, T0))
    rig.session(NODE, session_created(A, A_CREATED, NODE))
    rig.liveness(node_disconnected(NODE, D_AT))
    assert events(rig.advance(NODE, DEADLINE), "cdr") == ["nodeCrashed", "sessionDestroyed"]


def test_connections_and_participants_closed_before_the_crash_are_not_closed_again() -> None:
    rig = cluster()
    rig.sessions(
        NODE,
        [
            connection_destroyed(A1_FROM_A2, T0 + 7_000, "unsubscribe"),
            connection_destroyed(A2_FROM_A1, T0 + 7_100, "unsubscribe"),
            connection_destroyed(A2_OUT, T0 + 7_200, "disconnect"),
            participant_left(A, A2, T0 + 7_300, A2_JOINED),
        ],
    )
    out = cdr_and_notices(emits(rig.advance(NODE, DEADLINE)))
    session_a = [e for e in out if e.key in (NODE, A)]
    assert [who(e.body) for e in session_a] == [
        ("nodeCrashed", None, None, None),
        ("webrtcConnectionDestroyed", A1, "OUTBOUND", None),
        ("participantLeft", A1, None, None),
        ("sessionDisconnected", A1, None, None),
        ("recordingStatusChanged", None, None, None),
        ("broadcastStopped", None, None, None),
        ("sessionDestroyed", None, None, None),
    ]


@pytest.mark.parametrize("r", [0, 3])
def test_immediate_removal_follows_the_last_session_destroyed(r: int) -> None:
    out = cdr_and_notices(crash(RuleSettings(grace_ms=GRACE_MS, reconnection_timeout_s=r)))
    assert [who(e.body) for e in out[:-2]] == EXPECTED_ORDER
    tail = [e.body for e in out[-2:]]
    assert [(b["event"], b["oldStatus"], b["newStatus"], b["timestamp"]) for b in tail] == [
        ("mediaNodeStatusChanged", "running", "terminating", DEADLINE),
        ("mediaNodeStatusChanged", "terminating", "terminated", DEADLINE),
    ]
    assert all(set(b) == NODE_STATUS_KEYS for b in tail)
    assert {e.incident_id for e in out[-2:]} == {INCIDENT}


def test_late_removal_is_not_part_of_the_cascade() -> None:
    settings = RuleSettings(grace_ms=GRACE_MS, reconnection_timeout_s=10)
    assert [who(e.body) for e in cdr_and_notices(crash(settings))] == EXPECTED_ORDER


def test_a_session_created_after_the_deadline_survives_the_crash_in_any_interleaving() -> None:
    """Seen in the two-minute soak: a sessions partition read ahead of the node's liveness
    partition, so a session created after the deadline was applied before the disconnection,
    and the crash closed it; in event-time order its creation is held and applied after the
    crash, and it lives on (R8: the CDR must not depend on how partitions interleave)."""
    late = DEADLINE + 400

    def run(sessions_first: bool) -> tuple[list[str], list[str]]:
        rig = Rig()
        rig.liveness(node_connected(NODE, T0))
        out = rig.session(NODE, session_created(A, A_CREATED, NODE))
        late_input = [session_created(B, late, NODE), participant_joined(B, B_FIRST, late + 1)]
        if sessions_first:
            out += rig.sessions(NODE, late_input)
            out += rig.liveness(node_disconnected(NODE, D_AT))
        else:
            out += rig.liveness(node_disconnected(NODE, D_AT))
            out += rig.sessions(NODE, late_input)
        out += rig.advance(NODE, late + 10)
        out += rig.session(NODE, participant_joined(B, B_TIE_LOW, late + 20))
        crash = next(e.body for e in emits(out, "cdr") if e.body["event"] == "nodeCrashed")
        return sorted(f"{e.key} {e.body['event']}" for e in emits(out, "cdr")), crash["sessionIds"]

    in_order, out_of_order = run(sessions_first=False), run(sessions_first=True)
    assert out_of_order == in_order
    assert in_order[1] == [A]
    assert f"{B} participantJoined" in in_order[0]


def _outcome(out: list[Any]) -> tuple[list[str], list[str]]:
    return (
        sorted(f"{e.key} {e.body['event']}" for e in emits(out)),
        sorted(f"{r.input.payload['sessionId']} {r.input.event} {r.code}" for r in rejects(out)),
    )


def test_session_input_waits_while_the_nodes_liveness_is_read_a_grace_window_behind() -> None:
    """R8 across partitions: session input stamped after a disconnection's deadline reaches the
    node agent before the disconnection (its liveness partition is read behind, e.g. after a
    rewind). It waits until the node's liveness is known up to its time minus the grace
    window, and the outcome equals event-time order: the participant who joined after the
    deadline is dead-lettered ``staleAfterCrash``, not cascaded."""
    late = DEADLINE + 400
    late_input = [participant_joined(A, A2, late), session_created(B, late + 5, NODE)]

    def start() -> Rig:
        rig = Rig()
        rig.liveness(node_connected(NODE, T0))
        rig.session(NODE, session_created(A, A_CREATED, NODE))
        rig.session(NODE, participant_joined(A, A1, A1_JOINED))
        return rig

    in_order = start()
    out = in_order.liveness(node_disconnected(NODE, D_AT))
    out += in_order.sessions(NODE, late_input)
    out += in_order.advance(NODE, late + 10)

    behind = start()
    liveness_mark = A1_JOINED  # the node's liveness partition is read up to here
    lagged = []
    for offset, payload in enumerate(late_input, start=900):
        item = Input("session", payload, 1, offset)
        lagged += behind.engine.on_session(NODE, item, liveness_mark)
    assert lagged == [], "applied before the node's liveness was known"
    lagged += behind.liveness(node_disconnected(NODE, D_AT))
    lagged += behind.advance(NODE, late + 10)

    assert _outcome(lagged) == _outcome(out)
    assert f"{A} participantJoined staleAfterCrash" in _outcome(out)[1]
    crash = next(e.body for e in emits(lagged, "cdr") if e.body["event"] == "nodeCrashed")
    assert crash["sessionIds"] == [A]


def test_waiting_session_input_is_applied_once_a_mark_covers_it() -> None:
    rig = Rig()
    rig.liveness(node_connected(NODE, T0))
    item = Input("session", session_created(A, T0 + 60_000, NODE), 1, 5)
    assert rig.engine.on_session(NODE, item, T0 + 1) == []
    assert rig.engine.due(rig.store.get_node(NODE)) == T0 + 60_000 - GRACE_MS + 1  # type: ignore[arg-type]
    assert rig.advance(NODE, T0 + 60_000 - GRACE_MS) == []
    assert events(rig.advance(NODE, T0 + 60_000 - GRACE_MS + 1)) == ["sessionCreated"]
    assert rig.engine.on_session(NODE, item, T0 + 1) == []  # a replay
