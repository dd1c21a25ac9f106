"""How event attributes become JSON keys, and the ``ABSENT`` marker for keys not on the wire.

OpenVidu's wire format distinguishes a key that is missing (``reason`` of a ``started``
recording, ``receivingFrom`` of an OUTBOUND connection) from a key whose value is ``null``
(``oldStatus`` of a launching node). Python's ``None`` is kept for JSON ``null``; ``ABSENT``
marks the missing key, so a body read and written again keeps its exact key set.

Attribute names are snake_case and map to camelCase keys; an event class lists the exceptions
in its ``renames`` class attribute (``from_`` → ``from``, recording's literal ``media_node_id``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Final, Literal, NamedTuple

__all__ = ["ABSENT", "Absent", "WireField", "camel_case", "wire_fields"]


class Absent(enum.Enum):
    """The type of ``ABSENT``: a singleton, falsy, distinct from ``None``."""

    ABSENT = "ABSENT"

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = Absent.ABSENT


class WireField(NamedTuple):
    """One attribute of an event class and its JSON key."""

    attr: str
    wire: str
    required: bool


def camel_case(snake: str) -> str:
    """``unique_session_id`` → ``uniqueSessionId``."""
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_fields(cls: type[Any]) -> tuple[WireField, ...]:
    """The fields of an event dataclass in declared order; optional = defaults to ``ABSENT``."""
    cached = _FIELDS.get(cls)
    if cached is None:
        renames: dict[str, str] = dict(getattr(cls, "renames", {}))
        cached = _FIELDS[cls] = tuple(
            WireField(
                attr=f.name,
                wire=renames.get(f.name, camel_case(f.name)),
                required=f.default is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        )
    return cached


_FIELDS: dict[type[Any], tuple[WireField, ...]] = {}
