"""The records of the detector's internal topic (``mediacdr-nodeevents``), keyed by node id.

The router re-keys both inputs by media node so one node agent sees everything about a node in
one ordered stream. An envelope carries the accepted input as received (value text and headers),
where it came from (for dead letters and replay skipping) and what the router knows of it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

from services.core.deadletter import SourcePosition

__all__ = ["Envelope", "envelope_from_doc", "envelope_to_doc"]

EnvelopeKind = Literal["liveness", "session"]


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: EnvelopeKind
    source: SourcePosition
    key: str
    raw: str
    headers: list[tuple[str, bytes]]

    def payload(self) -> dict[str, Any]:
        """The input event; it was validated by the router, so it parses."""
        parsed: dict[str, Any] = json.loads(self.raw)
        return parsed


def envelope_to_doc(envelope: Envelope) -> dict[str, Any]:
    src = envelope.source
    return {
        "kind": envelope.kind,
        "src": [src.topic, src.partition, src.offset, src.timestamp_ms],
        "key": envelope.key,
        "raw": envelope.raw,
        "hdr": [[k, base64.b64encode(v).decode()] for k, v in envelope.headers],
    }


def envelope_from_doc(doc: dict[str, Any]) -> Envelope:
    topic, partition, offset, timestamp_ms = doc["src"]
    return Envelope(
        kind=doc["kind"],
        source=SourcePosition(topic, partition, offset, timestamp_ms),
        key=doc["key"],
        raw=doc["raw"],
        headers=[(k, base64.b64decode(v)) for k, v in doc["hdr"]],
    )
