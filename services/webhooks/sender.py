"""One delivery attempt over HTTP, and what to store about it."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import httpx

from services.core.webhooks import decode_secret, next_delay_s, outcome_of, webhook_headers
from services.store.webhooks import Due, WebhookStore
from services.webhooks import metrics

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
        store: WebhookStore,
        client: httpx.AsyncClient,
        schedule: Sequence[float],
        jitter: float,
        rng: random.Random | None = None,
    ) -> None:
        self.store, self.client = store, client
        self.schedule, self.jitter = list(schedule), jitter
        self.rng = rng or random.Random()

    async def attempt(self, due: Due) -> str:
        """POST ``due`` once; store and return the result."""
        stamp = int(time.time())
        headers = webhook_headers(
            message_id=due.event_id,
            timestamp_s=stamp,
            body=due.body,
            key=_key(due.secret) if due.secret else None,
            custom=[parse_header(h) for h in due.headers],
        )
        status_code: int | None = None
        error: str | None = None
        started = time.perf_counter()
        try:
            response = await self.client.post(due.url, content=due.body, headers=headers)
            status_code = response.status_code
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:500]
        metrics.ATTEMPT_SECONDS.observe(time.perf_counter() - started)
        at = datetime.now(UTC)
        outcome = outcome_of(status_code)
        next_at: datetime | None = None
        reason: str | None = None
        if outcome == "delivered":
            result = "delivered"
        elif outcome == "disable":
            result = "disabled"
            reason = f"410 Gone from {due.url} at {at.isoformat(timespec='seconds')}"
            log.warning("subscription %s disabled: %s", due.subscription_id, reason)
        else:
            delay = next_delay_s(due.attempts + 1, self.schedule, self.jitter, self.rng)
            if delay is None:
                result = "failed"
                log.warning(
                    "delivery %s to %s failed for good after %d attempts (%s)",
                    due.event_id,
                    due.subscription_id,
                    due.attempts + 1,
                    error or status_code,
                )
            else:
                result = "retry"
                next_at = at + timedelta(seconds=delay)
        await asyncio.to_thread(
            self.store.record_attempt,
            due,
            at=at,
            status_code=status_code,
            error=error,
            result=result,
            next_attempt_at=next_at,
            disable_reason=reason,
        )
        metrics.DELIVERIES.labels(due.subscription_id, result).inc()
        return result
