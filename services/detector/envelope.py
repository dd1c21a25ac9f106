"""The records of the detector's internal topic (``mediacdr-nodeevents``).

The router re-keys both inputs by media node so one node agent sees everything about a node in
one ordered stream. An envelope carries the accepted input as received (value text and headers),
where it came from (for dead letters and replay skipping), what the router knows of it, and the
node it is for. Envelopes travel in *batches*: one internal record carries every envelope a
router batch had for one internal partition, in input order, so Faust's per-record cost is paid
once per batch, not once per event (docs/BENCHMARKS.md, B2).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from services.core.deadletter import SourcePosition

__all__ = [
    "BATCH_KIND",
    "Envelope",
    "decode_batch",
    "encode_batch",
    "envelope_from_doc",
    "envelope_to_doc",
]

EnvelopeKind = Literal["liveness", "session"]
BATCH_KIND = "batch"


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: EnvelopeKind
    source: SourcePosition
    key: str
    raw: str
    headers: list[tuple[str, bytes]]
    node: str = ""

    def payload(self) -> dict[str, Any]:
        """The input event; it was validated by the router, so it parses."""
        parsed: dict[str, Any] = json.loads(self.raw)
        return parsed


def envelope_to_doc(envelope: Envelope) -> dict[str, Any]:
    src = envelope.source
    return {
        "kind": envelope.kind,
        "node": envelope.node,
        "src": [src.topic, src.partition, src.offset, src.timestamp_ms],
        "key": envelope.key,
        "raw": envelope.raw,
        "hdr": [[k, base64.b64encode(v).decode()] for k, v in envelope.headers],
    }


def envelope_from_doc(doc: dict[str, Any], node: str | None = None) -> Envelope:
    """``node`` is for records of the single-envelope format (keyed by node, before batches)."""
    topic, partition, offset, timestamp_ms = doc["src"]
    return Envelope(
        kind=doc["kind"],
        source=SourcePosition(topic, partition, offset, timestamp_ms),
        key=doc["key"],
        raw=doc["raw"],
        headers=[(k, base64.b64decode(v)) for k, v in doc["hdr"]],
        node=doc.get("node") or node or "",
    )


def encode_batch(envelopes: Sequence[Envelope]) -> bytes:
    doc = {"kind": BATCH_KIND, "items": [envelope_to_doc(e) for e in envelopes]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_batch(doc: dict[str, Any], key: bytes | None) -> list[tuple[Envelope, dict[str, Any]]]:
    """The envelopes of an internal record, each with the document it came from (the rules'
    ``Input.ref``, from which a dead letter is rebuilt). A record of the older single-envelope
    format (still on the topic after an upgrade) is a batch of one, its node in the key."""
    if doc.get("kind") == BATCH_KIND:
        return [(envelope_from_doc(item), item) for item in doc["items"]]
    node = key.decode("utf-8") if key is not None else None
    return [(envelope_from_doc(doc, node), doc)]
