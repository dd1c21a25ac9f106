"""Redacting personal data from CDR bodies: the fields go blank, the body stays valid."""

from __future__ import annotations

import json
from pathlib import Path

from services.core.redaction import PERSONAL_FIELDS, Redaction
from services.core.schemas import compiled_validator

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "cdr"


def example(event: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((SCHEMAS / f"{event}.v1.example.json").read_text())
    return loaded


def test_a_connections_records_lose_their_personal_fields_and_stay_valid() -> None:
    for event, fields in PERSONAL_FIELDS.items():
        body = example(event)
        redacted = Redaction(connections={str(body["connectionId"])}).redact(body)
        assert redacted is not None
        assert {k: redacted[k] for k in fields} == dict.fromkeys(fields, "")
        assert {k: v for k, v in redacted.items() if k not in fields} == {
            k: v for k, v in body.items() if k not in fields
        }
        assert list(redacted) == list(body)  # same keys, same order
        compiled_validator("cdr", event)(redacted)


def test_other_connections_and_other_events_are_left_alone() -> None:
    body = example("participantJoined")
    assert Redaction(connections={"con_someone_else"}).redact(body) is None
    crash = example("nodeCrashed")
    assert Redaction(before_ms=2**62).redact(crash) is None  # a node's ip is not a person's


def test_a_retention_period_redacts_what_is_older_and_only_once() -> None:
    body = example("participantLeft")
    stamp = int(str(body["timestamp"]))
    retention = Redaction(before_ms=stamp + 1)
    assert Redaction(before_ms=stamp).redact(body) is None
    redacted = retention.redact(body)
    assert redacted is not None
    assert retention.redact(redacted) is None  # nothing left to change
