"""One record of the CDR or node-facts topic, as the projector reads it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from services.core import codec
from services.core.errors import InvalidJson
from services.core.events import CDR_EVENTS, NODE_FACT_EVENTS
from services.core.projection.mapping import Contribution, contributions

__all__ = ["ProjectedRecord", "Skipped", "Source", "parse_record"]

Source = Literal["cdr", "nodes"]
_EVENTS = {"cdr": CDR_EVENTS, "nodes": NODE_FACT_EVENTS}


@dataclass(frozen=True, slots=True)
class ProjectedRecord:
    """A known event with what the projection needs from its headers and position."""

    source: Source
    topic: str
    partition: int
    offset: int
    event: str
    body: dict[str, Any]
    event_id: str
    media_node_id: str | None
    incident_id: str | None
    decided_at: str | None = None  # the ce_decidedat header of nodeCrashed
    #: The rows it contributes to, as ``parse_record`` computed them while checking it (so the
    #: store does not compute them again); ``None`` for a record built by hand.
    contributions: tuple[Contribution, ...] | None = None

    @property
    def timestamp(self) -> int:
        return int(self.body["timestamp"])

    def rows(self) -> tuple[Contribution, ...]:
        """What it contributes (CONTRACT §12): the carried contributions, or computed now."""
        if self.contributions is not None:
            return self.contributions
        return tuple(contributions(self))


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record the projection cannot use; its position advances and it is counted."""

    reason: Literal["invalidJson", "unknownEvent", "schemaViolation"]
    detail: str


def parse_record(
    source: Source,
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]],
) -> ProjectedRecord | Skipped:
    """Parse one record; anything but a known event with an integer timestamp is ``Skipped``."""
    try:
        body = codec.decode_json_object(value)
    except InvalidJson as error:
        return Skipped("invalidJson", str(error))
    event = body.get("event")
    if not isinstance(event, str) or event not in _EVENTS[source]:
        return Skipped("unknownEvent", f"event {event!r} is not a {source} event")
    timestamp = body.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        return Skipped("unknownEvent", f"{event} without an integer timestamp")
    found = {name: raw.decode("utf-8", "replace") for name, raw in headers}
    event_id = found.get("ce_id") or codec.ce_id(event, body)
    fields = (
        source,
        topic,
        partition,
        offset,
        event,
        body,
        event_id,
        found.get("ce_medianodeid"),
        found.get("ce_incidentid"),
        found.get("ce_decidedat"),
    )
    try:  # what the store will do with it, checked before any write and kept for the store
        rows = tuple(contributions(ProjectedRecord(*fields)))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return Skipped("schemaViolation", f"{event} lacks or mistypes {error}")
    return ProjectedRecord(*fields, rows)
