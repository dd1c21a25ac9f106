"""One error tree for mediacdr.

Every error the project raises on purpose derives from :class:`MediaCdrError`. Driver errors
(aiokafka, SQLAlchemy, aiohttp) are translated at the adapter boundary with ``raise … from e``.
``retriable`` tells a caller whether trying the same thing again may succeed.

::

    MediaCdrError
    ├── RejectedInput            a record that cannot be applied; carries a dead-letter ``code``
    │   ├── InvalidJson              invalidJson
    │   ├── SchemaViolation          schemaViolation
    │   ├── UnknownEvent             unknownEvent
    │   ├── KeyMismatch              keyMismatch
    │   ├── TimestampOutOfRange      timestampOutOfRange
    │   ├── StaleEvent               staleEvent
    │   ├── StaleAfterCrash          staleAfterCrash
    │   ├── UnknownSession           unknownSession
    │   ├── UnknownConnection        unknownConnection
    │   ├── SessionAlreadyOpen       sessionAlreadyOpen
    │   └── Duplicate                duplicate
    ├── ConfigurationError       bad settings; not retriable
    └── InfrastructureError      a broker, database or receiver failed; retriable
        └── BrokerUnavailable
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "DEAD_LETTER_CODES",
    "BrokerUnavailable",
    "ConfigurationError",
    "Duplicate",
    "InfrastructureError",
    "InvalidJson",
    "KeyMismatch",
    "MediaCdrError",
    "RejectedInput",
    "SchemaViolation",
    "SessionAlreadyOpen",
    "StaleAfterCrash",
    "StaleEvent",
    "TimestampOutOfRange",
    "UnknownConnection",
    "UnknownEvent",
    "UnknownSession",
]


class MediaCdrError(Exception):
    """Root of every error mediacdr raises on purpose."""

    retriable: ClassVar[bool] = False


class RejectedInput(MediaCdrError):
    """An input record that cannot be applied; it goes to the dead-letter topic with ``code``."""

    code: ClassVar[str] = "rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidJson(RejectedInput):
    code = "invalidJson"


class SchemaViolation(RejectedInput):
    code = "schemaViolation"


class UnknownEvent(RejectedInput):
    code = "unknownEvent"


class KeyMismatch(RejectedInput):
    code = "keyMismatch"


class TimestampOutOfRange(RejectedInput):
    code = "timestampOutOfRange"


class StaleEvent(RejectedInput):
    code = "staleEvent"


class StaleAfterCrash(RejectedInput):
    code = "staleAfterCrash"


class UnknownSession(RejectedInput):
    code = "unknownSession"


class UnknownConnection(RejectedInput):
    code = "unknownConnection"


class SessionAlreadyOpen(RejectedInput):
    code = "sessionAlreadyOpen"


class Duplicate(RejectedInput):
    code = "duplicate"


class ConfigurationError(MediaCdrError):
    """Settings that cannot work; fix the configuration and start again."""


class InfrastructureError(MediaCdrError):
    """A broker, database or HTTP receiver failed; the same call may succeed later."""

    retriable = True


class BrokerUnavailable(InfrastructureError):
    """Kafka did not answer in time."""


DEAD_LETTER_CODES: tuple[str, ...] = tuple(
    cls.code
    for cls in (
        InvalidJson,
        SchemaViolation,
        UnknownEvent,
        KeyMismatch,
        TimestampOutOfRange,
        StaleEvent,
        StaleAfterCrash,
        UnknownSession,
        UnknownConnection,
        SessionAlreadyOpen,
        Duplicate,
    )
)
