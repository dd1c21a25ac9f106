"""The published JSON Schemas, their examples and the event classes of core agree.

The expected CDR key sets are written out literally from OpenVidu's end-to-end tests (reference
§12, §13), so a change to a schema or a class that drifts from OpenVidu fails here.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import pytest

from services.core.events import (
    ABSENT,
    CDR_EVENTS,
    EVENT_TYPES,
    LIVENESS_EVENTS,
    NODE_FACT_EVENTS,
    NOTICE_EVENTS,
    SCHEMA_KINDS,
    SESSION_EVENTS,
    SessionCreated,
    event_from_wire,
    event_to_wire,
    schema_id,
    wire_fields,
)
from tests.support import openvidu_keys as ov

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
CASES = sorted((kind, event) for kind, events in SCHEMA_KINDS.items() for event in events)
CASE_IDS = [f"{kind}/{event}" for kind, event in CASES]
INPUT_KINDS = {"liveness", "session"}

#: OpenVidu's key sets (reference §12; broadcasts §13), besides ``event``, for the variant each
#: CDR example shows.
OPENVIDU_KEYS: dict[str, frozenset[str]] = {
    "sessionCreated": ov.SESSION,
    "sessionDestroyed": ov.SESSION | ov.ENDED,
    "participantJoined": ov.PARTICIPANT,
    "participantLeft": ov.PARTICIPANT | ov.ENDED,
    "webrtcConnectionCreated": ov.WEBRTC_OUTBOUND_VIDEO,
    "webrtcConnectionDestroyed": ov.WEBRTC_INBOUND_VIDEO | ov.ENDED,
    # ready, COMPOSED with video
    "recordingStatusChanged": ov.RECORDING_STARTED
    | {"reason", "resolution", "recordingLayout", "frameRate"},
    "signalSent": ov.SESSION | {"from", "to", "type", "data"},
    "filterEventDispatched": ov.SESSION
    | {"participantId", "connectionId", "streamId", "filterType", "eventType", "data"},
    "broadcastStarted": ov.BROADCAST_STARTED,
    "broadcastStopped": ov.BROADCAST_STARTED | ov.ENDED,
    "nodeCrashed": ov.NODE_CRASHED,
    "nodeRecovered": ov.NODE | {"nodeRole"},
    "mediaNodeStatusChanged": ov.NODE_STATUS,
}


def load(kind: str, event: str, what: str) -> dict[str, Any]:
    path = SCHEMA_DIR / kind / f"{event}.v1.{what}.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def schema(kind: str, event: str) -> dict[str, Any]:
    return load(kind, event, "schema")


def example(kind: str, event: str) -> dict[str, Any]:
    return load(kind, event, "example")


def is_valid(kind: str, event: str, instance: dict[str, Any]) -> bool:
    """Both validators must agree: jsonschema is the reference, fastjsonschema runs in services."""
    s = schema(kind, event)
    by_jsonschema: bool = jsonschema.Draft202012Validator(s).is_valid(instance)
    try:
        fastjsonschema.compile(s)(instance)
        by_fastjsonschema = True
    except fastjsonschema.JsonSchemaException:
        by_fastjsonschema = False
    assert by_jsonschema == by_fastjsonschema, f"validators disagree on {instance}"
    return by_jsonschema


# --- the set of files ----------------------------------------------------------------------------


def test_schema_files_equal_schema_kinds() -> None:
    schemas = {
        (p.parent.name, p.name.removesuffix(".v1.schema.json"))
        for p in SCHEMA_DIR.glob("*/*.schema.json")
    }
    examples = {
        (p.parent.name, p.name.removesuffix(".v1.example.json"))
        for p in SCHEMA_DIR.glob("*/*.example.json")
    }
    assert schemas == set(CASES)
    assert examples == set(CASES)


def test_no_stray_files_in_schemas() -> None:
    stray = [
        p.relative_to(SCHEMA_DIR).as_posix()
        for p in SCHEMA_DIR.rglob("*")
        if p.is_file()
        and p.name != "README.md"
        and not re.fullmatch(r"[A-Za-z]+\.v1\.(schema|example)\.json", p.name)
    ]
    assert stray == []


def test_kinds_cover_every_event_type() -> None:
    assert set().union(*SCHEMA_KINDS.values()) == set(EVENT_TYPES)
    in_both = LIVENESS_EVENTS & CDR_EVENTS
    assert in_both == {"mediaNodeStatusChanged"}
    assert SESSION_EVENTS < CDR_EVENTS
    assert len(CDR_EVENTS) == 14
    assert NODE_FACT_EVENTS.isdisjoint(CDR_EVENTS | LIVENESS_EVENTS | NOTICE_EVENTS)
    for name, cls in EVENT_TYPES.items():
        assert cls.name == name
        assert cls.version == 1


# --- each schema and its example -----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "event"), CASES, ids=CASE_IDS)
def test_schema_is_valid_draft_2020_12(kind: str, event: str) -> None:
    s = schema(kind, event)
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["title"]
    assert s["description"]
    assert s["type"] == "object"
    assert s["additionalProperties"] is False
    assert s["properties"]["event"]["const"] == event
    assert s["properties"]["timestamp"]["type"] == "integer"
    assert {"event", "timestamp"} <= set(s["required"]) <= set(s["properties"])


@pytest.mark.parametrize(("kind", "event"), CASES, ids=CASE_IDS)
def test_example_validates(kind: str, event: str) -> None:
    s = schema(kind, event)
    ex = example(kind, event)
    jsonschema.Draft202012Validator(s).validate(ex)
    fastjsonschema.compile(s)(ex)


@pytest.mark.parametrize(("kind", "event"), CASES, ids=CASE_IDS)
def test_example_round_trips_unchanged(kind: str, event: str) -> None:
    ex = example(kind, event)
    ev = event_from_wire(ex)
    assert type(ev) is EVENT_TYPES[event]
    wire = event_to_wire(ev)
    assert wire == ex
    assert sorted(wire.items(), key=str) == sorted(ex.items(), key=str)
    assert next(iter(wire)) == "event"
    assert event_from_wire(wire) == ev


@pytest.mark.parametrize(("kind", "event"), CASES, ids=CASE_IDS)
def test_schema_properties_equal_wire_names(kind: str, event: str) -> None:
    fields = wire_fields(EVENT_TYPES[event])
    expected = {f.wire for f in fields} | {"event"}
    if kind != "session":  # the mediaNodeId extension exists on input only
        expected -= {"mediaNodeId"}
    s = schema(kind, event)
    assert set(s["properties"]) == expected
    required_by_class = {f.wire for f in fields if f.required}
    assert required_by_class <= set(s["required"])


def test_schema_ids_unique_and_follow_the_pattern() -> None:
    ids = [schema(kind, event)["$id"] for kind, event in CASES]
    assert len(ids) == len(set(ids))
    for (kind, event), sid in zip(CASES, ids, strict=True):
        assert sid == schema_id(kind, event)
        if kind in INPUT_KINDS:
            assert sid == f"urn:mediacdr:{kind}.{event}:1"
        else:
            assert sid == f"urn:mediacdr:{event}:1"


@pytest.mark.parametrize("event", sorted(CDR_EVENTS))
def test_cdr_example_has_openvidu_key_set(event: str) -> None:
    assert set(example("cdr", event)) == OPENVIDU_KEYS[event] | {"event"}


def test_openvidu_key_table_covers_the_cdr() -> None:
    assert set(OPENVIDU_KEYS) == CDR_EVENTS


def test_liveness_and_cdr_media_node_status_share_content() -> None:
    a = schema("liveness", "mediaNodeStatusChanged")
    b = schema("cdr", "mediaNodeStatusChanged")
    assert a["properties"] == b["properties"]
    assert a["required"] == b["required"]


# --- negative cases ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "event"), CASES, ids=CASE_IDS)
def test_missing_required_key_fails(kind: str, event: str) -> None:
    for key in schema(kind, event)["required"]:
        broken = example(kind, event)
        del broken[key]
        assert not is_valid(kind, event, broken), key


@pytest.mark.parametrize(("kind", "event"), CASES, ids=CASE_IDS)
def test_extra_key_fails(kind: str, event: str) -> None:
    assert not is_valid(kind, event, {**example(kind, event), "surprise": 1})


@pytest.mark.parametrize(("kind", "event"), CASES, ids=CASE_IDS)
def test_wrong_type_fails(kind: str, event: str) -> None:
    ex = example(kind, event)
    assert not is_valid(kind, event, {**ex, "timestamp": str(ex["timestamp"])})
    assert not is_valid(kind, event, {**ex, "timestamp": True})
    assert not is_valid(kind, event, {**ex, "event": "somethingElse"})


@pytest.mark.parametrize("event", sorted(SESSION_EVENTS))
def test_input_and_cdr_differ_only_by_the_documented_keys(event: str) -> None:
    ex = example("session", event)
    bare = {k: v for k, v in ex.items() if k not in ("uniqueSessionId", "participantId")}
    assert is_valid("session", event, bare)  # OpenVidu's optional keys are optional on input
    cdr = example("cdr", event)
    assert not is_valid("cdr", event, {**cdr, "mediaNodeId": "media_i-1234567890abcdef0"})
    assert not is_valid("cdr", event, {k: v for k, v in cdr.items() if k != "uniqueSessionId"})
    if "participantId" in cdr:
        assert not is_valid("cdr", event, {k: v for k, v in cdr.items() if k != "participantId"})


def test_media_node_id_required_on_session_created_only() -> None:
    created = example("session", "sessionCreated")
    assert not is_valid("session", "sessionCreated", {**created, "mediaNodeId": ""})
    del created["mediaNodeId"]
    assert not is_valid("session", "sessionCreated", created)
    left = example("session", "participantLeft")
    del left["mediaNodeId"]
    assert is_valid("session", "participantLeft", left)


DROP = object()  # in a change: remove the key

CONDITIONAL_CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    # INBOUND needs receivingFrom; OUTBOUND must not have it
    ("cdr", "webrtcConnectionDestroyed", {"receivingFrom": DROP}, False),
    ("cdr", "webrtcConnectionCreated", {"receivingFrom": "con_EIeO06zgMz"}, False),
    ("cdr", "webrtcConnectionCreated", {"rtspUri": "rtsp://10.0.0.7:554/live"}, True),
    ("cdr", "webrtcConnectionDestroyed", {"rtspUri": "rtsp://10.0.0.7:554/live"}, False),
    # no video: no video keys; video: all of them
    ("cdr", "webrtcConnectionCreated", {"videoEnabled": False}, False),
    ("cdr", "webrtcConnectionCreated", {"videoDimensions": DROP}, False),
    ("session", "webrtcConnectionDestroyed", {"videoSource": "CAMERA"}, False),
    # recording: no reason when started, a reason otherwise
    ("session", "recordingStatusChanged", {"reason": "nodeCrashed"}, False),
    ("cdr", "recordingStatusChanged", {"reason": DROP}, False),
    ("cdr", "recordingStatusChanged", {"status": "stopped", "reason": "nodeCrashed"}, True),
    ("cdr", "recordingStatusChanged", {"reason": "unpublish"}, False),
    # COMPOSED with video has layout keys, INDIVIDUAL has none
    ("cdr", "recordingStatusChanged", {"frameRate": DROP}, False),
    ("session", "recordingStatusChanged", {"resolution": "1280x720"}, False),
    ("cdr", "recordingStatusChanged", {"customLayout": "my/layout"}, False),
    ("cdr", "recordingStatusChanged", {"recordingLayout": "CUSTOM", "customLayout": "x"}, True),
    ("cdr", "recordingStatusChanged", {"media_node_id": "media_i-1234567890abcdef0"}, True),
    # reasons restricted per event
    ("cdr", "sessionDestroyed", {"reason": "disconnect"}, False),
    ("cdr", "participantLeft", {"reason": "lastParticipantLeft"}, False),
    ("cdr", "broadcastStopped", {"reason": "nodeCrashed"}, True),
    ("cdr", "broadcastStopped", {"reason": "recordingStoppedByServer"}, False),
    # node fields
    ("cdr", "nodeCrashed", {"environmentId": None, "ip": None, "uri": None}, True),
    ("cdr", "nodeCrashed", {"sessionIds": ["ses_A", "ses_A"]}, False),
    ("cdr", "nodeRecovered", {"nodeRole": "masternode"}, False),
    ("liveness", "mediaNodeStatusChanged", {"newStatus": "launching", "oldStatus": None}, True),
    ("liveness", "mediaNodeStatusChanged", {"newStatus": "exploded"}, False),
    ("liveness", "nodeHeartbeat", {"load": 101}, False),
    ("liveness", "nodeConnected", {"id": ""}, False),
    ("nodefacts", "incidentOpened", {"cause": "crashed"}, False),
    ("nodefacts", "incidentClosed", {"incidentId": "no-timestamp"}, False),
    ("notice", "sessionDisconnected", {"suggestedMediaNodeId": None}, True),
    ("notice", "sessionDisconnected", {"reason": "disconnect"}, False),
    ("cdr", "signalSent", {"to": "con_Yz3To5z53q"}, False),
]


@pytest.mark.parametrize(("kind", "event", "change", "valid"), CONDITIONAL_CASES)
def test_value_rules(kind: str, event: str, change: dict[str, Any], valid: bool) -> None:
    instance = example(kind, event)
    for key, value in change.items():
        if value is DROP:
            del instance[key]
        else:
            instance[key] = value
    assert is_valid(kind, event, instance) is valid


# --- the event classes ---------------------------------------------------------------------------


def test_absent_is_its_own_falsy_singleton() -> None:
    assert repr(ABSENT) == "ABSENT"
    assert not ABSENT
    assert ABSENT is not None
    assert copy.deepcopy(ABSENT) is ABSENT
    assert SessionCreated(timestamp=1, session_id="s").media_node_id is ABSENT


def test_event_to_wire_leaves_absent_out_and_keeps_null() -> None:
    ev = event_from_wire(example("cdr", "signalSent"))
    wire = event_to_wire(ev)
    assert wire["from"] is None
    assert "mediaNodeId" not in wire


def test_event_from_wire_rejects_unknown_event_and_keys() -> None:
    with pytest.raises(ValueError, match="unknown event"):
        event_from_wire({"event": "autoscaling", "timestamp": 1})
    with pytest.raises(ValueError, match="unknown event"):
        event_from_wire({"timestamp": 1})
    with pytest.raises(ValueError, match="unknown keys"):
        event_from_wire({**example("cdr", "sessionCreated"), "surprise": 1})
    with pytest.raises(ValueError, match="missing keys"):
        event_from_wire({"event": "sessionCreated", "timestamp": 1})


def test_lists_are_copied_not_shared() -> None:
    ex = example("cdr", "nodeCrashed")
    wire = event_to_wire(event_from_wire(ex))
    wire["sessionIds"].append("ses_other")
    assert "ses_other" not in ex["sessionIds"]
