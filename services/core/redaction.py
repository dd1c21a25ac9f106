"""Erasing personal data from CDR bodies, for the retention and erasure procedures of
docs/OPERATIONS.md ("Personal data").

The personal fields of the CDR are the participant's ``ip``, ``location``, ``platform``,
``clientData`` and ``serverData`` on ``participantJoined`` and ``participantLeft`` (OpenVidu's
key set; the projection copies them into ``participants``). Redacting keeps the key set and the
types (every field becomes ``""``), so a redacted body still validates against its schema and
every count, duration and link of the CDR stays as it was.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PERSONAL_FIELDS", "REDACTED", "Redaction"]

#: Event → its fields that describe a person.
PERSONAL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "participantJoined": ("ip", "location", "platform", "clientData", "serverData"),
    "participantLeft": ("ip", "location", "platform", "clientData", "serverData"),
}
REDACTED = ""


@dataclass(frozen=True, slots=True)
class Redaction:
    """Which bodies to redact: those of ``connections`` (an erasure request), and every one
    stamped before ``before_ms`` (a retention period)."""

    connections: Collection[str] = ()
    before_ms: int | None = None

    def applies(self, body: Mapping[str, Any]) -> bool:
        if str(body.get("event")) not in PERSONAL_FIELDS:
            return False
        if body.get("connectionId") in self.connections:
            return True
        stamp = body.get("timestamp")
        return self.before_ms is not None and isinstance(stamp, int) and stamp < self.before_ms

    def redact(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """The redacted body, or ``None`` when the redaction does not apply (or changes
        nothing)."""
        if not self.applies(body):
            return None
        fields = PERSONAL_FIELDS[str(body["event"])]
        redacted = {k: (REDACTED if k in fields else v) for k, v in body.items()}
        return None if redacted == dict(body) else redacted
