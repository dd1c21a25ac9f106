"""Output records of the detector: topic, key, value bytes, headers, timestamp.

Pure: builds the records; the Faust adapter only sends them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from services.config import DetectorSettings
from services.core.codec import Headers, ce_headers, ce_id, ce_time, encode_value
from services.core.deadletter import (
    TRUNCATED_HEADER,
    SourcePosition,
    dead_letter_headers,
    fit_dead_letter,
)
from services.core.rules.outputs import Emit, Reject
from services.core.schemas import dataschema_urn
from services.detector.envelope import envelope_from_doc

__all__ = ["DECIDED_AT", "SOURCE", "Output", "OutputBuilder"]

SOURCE = "mediacdr/detector"
#: CloudEvents extension on `nodeCrashed`: the wall-clock time of the decision.
DECIDED_AT = "ce_decidedat"


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


class OutputBuilder:
    """Knows the topic names; turns decisions into records."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings

    def emit(self, emit: Emit) -> Output:
        """A record the rules asked for: CDR, node fact or client notice."""
        body = emit.body
        event = str(body["event"])
        timestamp = int(body["timestamp"])
        headers = ce_headers(
            ce_type=event,
            event_id=ce_id(event, body),
            source=SOURCE,
            timestamp_ms=timestamp,
            dataschema=dataschema_urn(event),
            media_node_id=emit.media_node_id,
            incident_id=emit.incident_id,
        )
        if event == "nodeCrashed":  # when it was decided, for the decision delay (docs/WIRE.md)
            headers.append((DECIDED_AT, ce_time(int(time.time() * 1000)).encode()))
        topic = {
            "cdr": self.settings.topic_cdr,
            "nodes": self.settings.topic_nodes,
            "notifications": self.settings.topic_notifications,
        }[emit.stream]
        return Output(topic, emit.key.encode(), encode_value(body), headers, timestamp)

    def rejected(self, reject: Reject) -> Output:
        """The dead letter of an input the rules could not apply; ``ref`` is its envelope."""
        envelope = envelope_from_doc(reject.input.ref)
        return self.dead_letter(
            envelope.key.encode(),
            envelope.raw.encode("utf-8"),
            envelope.headers,
            envelope.source,
            code=reject.code,
            detail=reject.detail,
        )

    def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        source: SourcePosition,
        *,
        code: str,
        detail: str,
    ) -> Output:
        """The rejected record as received, with the reason in its headers (CONTRACT §11);
        cut to fit a Kafka request if it is too big for that, with a ``truncated`` header."""
        is_json = _is_json(value)
        key, value, headers, cut = fit_dead_letter(key, value, headers)
        out_headers = dead_letter_headers(
            headers,
            code=code,
            detail=detail,
            source=source,
            service=SOURCE,
            value_is_json=is_json,
        )
        if cut is not None:
            out_headers.append((TRUNCATED_HEADER, cut.encode()))
        return Output(self.settings.topic_deadletter, key, value, out_headers, source.timestamp_ms)


def _is_json(value: bytes | None) -> bool:
    if value is None:
        return False
    try:
        json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return False
    return True
