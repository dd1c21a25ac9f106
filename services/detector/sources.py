"""Raw-bytes Faust topics, and reading what a Faust event knows about the record it came from."""

from __future__ import annotations

from typing import Any

from services.core.deadletter import SourcePosition
from services.core.errors import RejectedInput
from services.detector.output import Output, OutputBuilder

__all__ = ["dead_letter_of", "raw_headers", "raw_topic", "source_of"]


def raw_topic(app: Any, name: str, **kwargs: Any) -> Any:
    """A topic of the app whose keys and values are bytes, untouched by Faust's codecs."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        **kwargs,
    )


def source_of(event: Any) -> SourcePosition:
    message = event.message
    timestamp = message.timestamp
    timestamp_ms = round(timestamp * 1000) if timestamp is not None else 0
    return SourcePosition(message.topic, message.partition, message.offset, timestamp_ms)


def raw_headers(event: Any) -> list[tuple[str, bytes]]:
    """The record's headers as Kafka has them (a list: names may repeat)."""
    headers = event.message.headers or []
    if isinstance(headers, dict):
        return list(headers.items())
    return [(str(k), bytes(v)) for k, v in headers]


def dead_letter_of(builder: OutputBuilder, event: Any, error: RejectedInput) -> Output:
    """The dead letter of a Faust event's record: the record as received, with the reason."""
    return builder.dead_letter(
        event.key,
        event.value,
        raw_headers(event),
        source_of(event),
        code=error.code,
        detail=error.detail,
    )
