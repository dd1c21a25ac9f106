"""One delivery attempt: sign, POST, and decide what to store about it.

The attempt only *decides*; storing is the dispatcher's, in batches
(``WebhookStore.record_attempts``), always after the answer: a result is never stored for a
request that has not been answered.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from services.core.webhooks import decode_secret, next_delay_s, outcome_of, webhook_headers
from services.store.webhooks import Attempt, Due
from services.webhooks import metrics
from services.webhooks.http import Answer, Post

__all__ = ["Sender", "parse_header"]

log = logging.getLogger(__name__)


def parse_header(line: str) -> tuple[str, str]:
    """``"Name: Value"`` (OpenVidu's header format) → ``(name, value)``."""
    name, sep, value = line.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"a webhook header is 'Name: Value', not {line!r}")
    return name.strip(), value.strip()


@lru_cache(maxsize=1024)
def _key(secret: str) -> bytes:
    return decode_secret(secret)


class Sender:
    def __init__(
        self,
        post: Post,
        schedule: Sequence[float],
        jitter: float,
        rng: random.Random | None = None,
    ) -> None:
        self.post = post
        self.schedule, self.jitter = list(schedule), jitter
        self.rng = rng or random.Random()

    async def attempt(self, due: Due) -> Attempt:
        """POST ``due`` once (signed afresh) and return what to store."""
        stamp = int(time.time())
        headers = webhook_headers(
            message_id=due.event_id,
            timestamp_s=stamp,
            body=due.body,
            key=_key(due.secret) if due.secret else None,
            custom=[parse_header(h) for h in due.headers],
        )
        started = time.perf_counter()
        answer = await self.post(due.url, due.body, headers)
        metrics.ATTEMPT_SECONDS.observe(time.perf_counter() - started)
        attempt = self.judge(due, answer, datetime.now(UTC))
        metrics.DELIVERIES.labels(due.subscription_id, attempt.result).inc()
        return attempt

    def judge(self, due: Due, answer: Answer, at: datetime) -> Attempt:
        """What ``answer`` means for ``due``: delivered, disabled (410), a retry, or failed."""
        code, error = answer.status_code, answer.error
        outcome = outcome_of(code)
        if outcome == "delivered":
            return Attempt(due.subscription_id, due.event_id, at, code, error, "delivered")
        if outcome == "disable":
            reason = f"410 Gone from {due.url} at {at.isoformat(timespec='seconds')}"
            log.warning("subscription %s disabled: %s", due.subscription_id, reason)
            return Attempt(
                due.subscription_id, due.event_id, at, code, error, "disabled", at, reason
            )
        delay = next_delay_s(due.attempts + 1, self.schedule, self.jitter, self.rng)
        if delay is None:
            log.warning(
                "delivery %s to %s failed for good after %d attempts (%s)",
                due.event_id,
                due.subscription_id,
                due.attempts + 1,
                error or code,
            )
            return Attempt(due.subscription_id, due.event_id, at, code, error, "failed")
        next_at = at + timedelta(seconds=delay)
        return Attempt(due.subscription_id, due.event_id, at, code, error, "retry", next_at)
