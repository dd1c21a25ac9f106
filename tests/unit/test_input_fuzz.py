"""Fuzzed input against the pure checks (issue 8): nothing but a coded rejection ever escapes.

The strategies (tests/support/fuzz.py) make garbage, broken and deep JSON, huge and
non-Unicode strings, wrong types, missing keys, boundary and far-off timestamps and wrong keys.
What is accepted must be writable as every output writes it; what is refused must carry a
contract code and a reason that fits in a Kafka header; the dead letter of anything must build.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.ingest import Accepted, Counted, Refused, check_liveness, check_openvidu
from services.config import DetectorSettings
from services.core.codec import canonical_json, ce_id, decode_json_object, encode_value
from services.core.deadletter import MAX_DEAD_LETTER_BYTES, SourcePosition
from services.core.errors import DEAD_LETTER_CODES, InvalidJson, RejectedInput
from services.core.rules import Emit, InMemoryRulesStore, Input, NodeEngine, Reject, RuleSettings
from services.core.validation import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, validate_input
from services.detector.output import OutputBuilder
from services.detector.routing import Route, bind, route_session
from tests.support.fuzz import T0, Record, input_records, raw_values, story_records
from tests.support.rules_builders import validate

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
INGEST_CODES = {*DEAD_LETTER_CODES, "missingMediaNode"}
SOURCE = SourcePosition("mediacdr.sessions", 3, 42, T0)


def _checked(kind: Any, key: bytes | None, value: bytes | None) -> Any:
    """validate_input's answer: the ValidInput, or the rejection (anything else propagates)."""
    try:
        return validate_input(kind, key, value)
    except RejectedInput as e:
        return e


@FUZZ
@given(input_records())
def test_validation_accepts_what_can_be_written_or_refuses_with_a_code(record: Record) -> None:
    kind, key, value = record
    checked = _checked(kind, key, value)
    if isinstance(checked, RejectedInput):
        assert checked.code in DEAD_LETTER_CODES
        assert checked.detail
        return
    assert MIN_TIMESTAMP_MS <= checked.timestamp < MAX_TIMESTAMP_MS
    assert isinstance(checked.payload["timestamp"], int)
    assert key == checked.key.encode()
    encode_value(checked.payload)  # the CDR copy, the envelope and ce_id must all encode
    canonical_json(checked.payload).encode("utf-8")
    ce_id(checked.event, checked.payload)


@FUZZ
@given(input_records(), st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8))))
def test_anything_can_be_dead_lettered(record: Record, headers: list[tuple[str, bytes]]) -> None:
    kind, key, value = record
    checked = _checked(kind, key, value)
    code = checked.code if isinstance(checked, RejectedInput) else "duplicate"
    detail = checked.detail if isinstance(checked, RejectedInput) else "x" * 10_000
    out = OutputBuilder(DetectorSettings()).dead_letter(
        key, value, headers, SOURCE, code=code, detail=detail
    )
    assert (out.key, out.value) == (key, value)
    names = dict(out.headers)
    assert names["error"] == code.encode() and 0 < len(names["error_detail"]) <= 4000


@FUZZ
@given(input_records(), st.sampled_from([None, "media_f9"]))
def test_ingest_answers_every_body(record: Record, node: str | None) -> None:
    _kind, _key, value = record
    raw = value if value is not None else b""
    for checked in (check_openvidu(raw, node, 10**9), check_liveness(raw, 10**9)):
        if isinstance(checked, Refused):
            assert checked.code in INGEST_CODES and checked.detail
        elif isinstance(checked, Accepted):
            validate_input(
                "session" if checked.role == "sessions" else "liveness",
                checked.key,
                checked.value,
            )
        else:
            assert isinstance(checked, Counted)


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(input_records(max_huge=2_000), max_size=40), st.lists(story_records(), max_size=3))
def test_the_rules_take_whatever_validation_accepts(
    singles: list[Record], stories: list[list[Record]]
) -> None:
    """Accepted input of any shape, out of order and repeated, through the node engine:
    every output is a schema-valid record or a coded rejection."""
    engine = NodeEngine(InMemoryRulesStore(), RuleSettings(grace_ms=3000))
    routes: dict[str, Route] = {}
    nodes: set[str] = set()
    records = singles + [r for story in stories for r in story]
    for offset, (kind, key, value) in enumerate(records):
        checked = _checked(kind, key, value)
        if isinstance(checked, RejectedInput):
            continue
        item = Input(kind, checked.payload, 0, offset)
        if kind == "liveness":
            nodes.add(checked.key)
            outputs = engine.on_liveness(checked.key, item)
        else:
            try:
                node = route_session(checked, routes.get(checked.key), offset)
            except RejectedInput:
                continue
            changed = bind(checked.event, node, routes.get(checked.key), 0, offset)
            if changed is not None:
                routes[checked.key] = changed
            nodes.add(node)
            outputs = engine.on_session(node, item)
        _check_outputs(outputs)
    for node in sorted(nodes):
        _check_outputs(engine.advance(node, MAX_TIMESTAMP_MS))


def _check_outputs(outputs: list[Any]) -> None:
    for output in outputs:
        if isinstance(output, Reject):
            assert output.code in DEAD_LETTER_CODES and output.detail
        else:
            assert isinstance(output, Emit)
            validate(output)
            encode_value(output.body)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"a":1e400}', "out of range"),
        (b'{"a":NaN}', "NaN"),
        (b'{"a":"\\ud800"}', "lone surrogate"),
        (b'{"a":"x\\udfff"}', "lone surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "recursion"),
    ],
)
def test_values_no_output_could_carry_are_invalid_json(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidJson, match=why):
        decode_json_object(raw)


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    assert decode_json_object(b'{"a":"\\ud83d\\ude00"}') == {"a": "😀"}
    assert decode_json_object(b'{"a":"\\\\ud800"}') == {"a": "\\ud800"}


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("timestamp", 1.75e12, "schemaViolation"),
        ("timestamp", 10**30, "timestampOutOfRange"),
        ("startTime", 5, "timestampOutOfRange"),
        ("startTime", float(T0), "schemaViolation"),
        ("duration", 2**31, "schemaViolation"),
        ("duration", 1.0, "schemaViolation"),
    ],
)
def test_integers_are_integers_that_fit(field: str, value: Any, code: str) -> None:
    body = {
        "event": "participantLeft",
        "timestamp": T0,
        "sessionId": "ses_A",
        "startTime": T0 - 5000,
        "duration": 5,
        "reason": "disconnect",
        "connectionId": "con_A",
        "location": "",
        "ip": "",
        "platform": "",
        "clientData": "",
        "serverData": "",
    }
    validate_input("session", b"ses_A", json.dumps(body).encode())
    with pytest.raises(RejectedInput) as refused:
        validate_input("session", b"ses_A", json.dumps(body | {field: value}).encode())
    assert refused.value.code == code


@FUZZ
@given(raw_values("liveness"))
def test_dead_letters_say_whether_the_value_is_json(value: bytes | None) -> None:
    out = OutputBuilder(DetectorSettings()).dead_letter(
        b"k", value, [], SOURCE, code="invalidJson", detail="x"
    )
    content_type = dict(out.headers).get("content-type")
    try:
        json.loads(value or b"")
    except (ValueError, RecursionError):
        assert content_type is None
    else:
        assert content_type == b"application/json"


@pytest.mark.parametrize(
    ("key_size", "value_size", "header_sizes", "cut"),
    [
        (10, 1_048_000, [], "value:1048000"),
        (600_000, 500_000, [], "key:600000,value:500000"),
        (10, 100, [400_000, 400_000, 400_000], "headers:2"),
        (10, 800_000, [100], None),
    ],
)
def test_a_record_near_the_size_limit_can_still_be_dead_lettered(
    key_size: int, value_size: int, header_sizes: list[int], cut: str | None
) -> None:
    key, value = b"k" * key_size, b"v" * value_size
    headers = [(f"h{i}", b"x" * n) for i, n in enumerate(header_sizes)]
    out = OutputBuilder(DetectorSettings()).dead_letter(
        key, value, headers, SOURCE, code="schemaViolation", detail="too big"
    )
    size = len(out.key or b"") + len(out.value or b"")
    size += sum(len(k) + len(v) for k, v in out.headers)
    assert size <= MAX_DEAD_LETTER_BYTES
    assert dict(out.headers).get("truncated") == (cut.encode() if cut else None)
    assert key.startswith(out.key or b"") and value.startswith(out.value or b"")


def test_held_input_is_applied_even_after_later_records_of_its_session() -> None:
    """Found by the e2e fuzz: a session event stamped after an open incident's deadline is
    held; a later record of the same session, stamped before it, is applied at once. When the
    decision releases the held one, it must be applied (here: a new incarnation after the
    crash), not taken for a replay because its offset is lower."""
    engine = NodeEngine(InMemoryRulesStore(), RuleSettings(grace_ms=3000))
    created = {"event": "sessionCreated", "sessionId": "ses_A", "mediaNodeId": "media_a"}
    engine.on_liveness("media_a", Input("liveness", _liveness("nodeConnected", T0), 0, 1))
    engine.on_liveness("media_a", Input("liveness", _liveness("nodeDisconnected", T0 + 10), 0, 2))
    held = engine.on_session("media_a", Input("session", created | {"timestamp": T0 + 9000}, 1, 7))
    first = engine.on_session("media_a", Input("session", created | {"timestamp": T0 + 5}, 1, 8))
    decided = engine.advance("media_a", MAX_TIMESTAMP_MS)
    assert held == [] and [e.body["timestamp"] for e in first if isinstance(e, Emit)] == [T0 + 5]
    cdr = [(o.body["event"], o.body["timestamp"]) for o in decided if isinstance(o, Emit)]
    assert ("sessionCreated", T0 + 9000) in cdr, cdr


def _liveness(event: str, ts: int) -> dict[str, Any]:
    return {"event": event, "timestamp": ts, "id": "media_a"}
