"""Webhook delivery as pure functions (CONTRACT §13): signing, the retry schedule, outcomes."""

from services.core.webhooks.delivery import (
    DEFAULT_SCHEDULE_S,
    Outcome,
    next_delay_s,
    outcome_of,
    wants,
)
from services.core.webhooks.signing import (
    InvalidSecret,
    decode_secret,
    new_secret,
    sign,
    webhook_headers,
)

__all__ = [
    "DEFAULT_SCHEDULE_S",
    "InvalidSecret",
    "Outcome",
    "decode_secret",
    "new_secret",
    "next_delay_s",
    "outcome_of",
    "sign",
    "wants",
    "webhook_headers",
]
