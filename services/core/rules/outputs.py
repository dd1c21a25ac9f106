"""What the rules ask the adapter to write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from services.core.rules.state import Input

__all__ = ["Emit", "Output", "Reject"]

Stream = Literal["cdr", "nodes", "notifications"]


@dataclass(frozen=True, slots=True)
class Emit:
    """A record for an output topic: ``body`` is the JSON value, ``key`` the record key."""

    stream: Stream
    key: str
    body: dict[str, Any]
    media_node_id: str | None
    incident_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """An input that cannot be applied: dead-letter it with ``code``."""

    input: Input
    code: str
    detail: str


Output = Emit | Reject
