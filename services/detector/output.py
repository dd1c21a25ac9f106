"""Output records of the detector: topic, key, value bytes, headers, timestamp.

Pure: builds the records; the Faust adapter only sends them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from services.config import DetectorSettings
from services.core.cdr import cdr_copy
from services.core.codec import Headers, ce_headers, ce_id, decode_json_object, encode_value
from services.core.deadletter import SourcePosition, dead_letter_headers
from services.core.errors import InvalidJson, RejectedInput
from services.core.schemas import dataschema_urn
from services.detector.envelope import Envelope

__all__ = ["SOURCE", "Output", "OutputBuilder"]

SOURCE = "mediacdr/detector"


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

    def cdr(
        self,
        body: Mapping[str, Any],
        *,
        key: str,
        media_node_id: str | None,
        incident_id: str | None = None,
    ) -> Output:
        event = str(body["event"])
        timestamp = int(body["timestamp"])
        headers = ce_headers(
            ce_type=event,
            event_id=ce_id(event, body),
            source=SOURCE,
            timestamp_ms=timestamp,
            dataschema=dataschema_urn(event),
            media_node_id=media_node_id,
            incident_id=incident_id,
        )
        return Output(self.settings.topic_cdr, key.encode(), encode_value(body), headers, timestamp)

    def copies(self, envelope: Envelope, node: str) -> Iterator[Output]:
        """The CDR copies of an accepted input event (CONTRACT §3, §4)."""
        payload = envelope.payload()
        if envelope.kind == "session":
            usid = envelope.unique_session_id or ""
            yield self.cdr(cdr_copy(payload, usid), key=envelope.key, media_node_id=node)
        elif payload["event"] == "mediaNodeStatusChanged":
            yield self.cdr(payload, key=envelope.key, media_node_id=node)

    def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        source: SourcePosition,
        error: RejectedInput,
    ) -> Output:
        """The rejected record as received, with the reason in its headers (CONTRACT §11)."""
        out_headers = dead_letter_headers(
            headers,
            code=error.code,
            detail=error.detail,
            source=source,
            service=SOURCE,
            value_is_json=_is_json(value),
        )
        return Output(self.settings.topic_deadletter, key, value, out_headers, source.timestamp_ms)


def _is_json(value: bytes | None) -> bool:
    try:
        decode_json_object(value)
    except InvalidJson:
        return False
    return True
