"""Riding out a database outage: the SQL-writing services start their loop again instead of
exiting.

Why a restart of the loop rather than a retry at each call: every state the projector and the
webhooks service keep is in SQL, written in one transaction with the consumed positions, so
starting the loop again — a new consumer that seeks to the positions stored in SQL — is exactly
the recovery a kill -9 gets, and it covers every statement, present and future, without a retry
at each. What was in flight when the database went away is done again (a batch re-read, an
attempt re-sent with the same ``webhook-id``); deduplication by ``ce_id`` absorbs it.

The first connection is still checked before the loop starts (``checked_engine``), so a wrong
URL or a missing schema stops the service at once, as before. Likewise a broker that cannot be
reached stops the first start; a later start (after a database outage) can meet a broker that
is down or restarting too — seen in the soak, where the two outages overlapped — and waits for
it like for the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from sqlalchemy.exc import InterfaceError, OperationalError

from services.core.errors import BrokerUnavailable

__all__ = ["DATABASE_UNREACHABLE", "serve_through_outages"]

log = logging.getLogger(__name__)
T = TypeVar("T")
#: What the driver raises when the server is down, restarting, or dropped the connection.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)
#: What starting the Kafka clients raises while the broker is down or restarting.
BROKER_UNREACHABLE = (KafkaError, BrokerUnavailable)
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0


async def serve_through_outages(
    serve: Callable[[asyncio.Event], Awaitable[T]],
    stop: asyncio.Event,
    what: str,
    *,
    first_delay_s: float = FIRST_DELAY_S,
) -> T | None:
    """Run ``serve(inner_stop)`` until ``stop``; when it fails because the database is
    unreachable, wait (0.5 s doubling to 10 s) and run it again. ``inner_stop`` is set with
    ``stop``, and may be set by ``serve`` itself to stop its own tasks."""
    delay = first_delay_s
    first = True
    while True:
        inner = asyncio.Event()
        relay = asyncio.ensure_future(_relay(stop, inner))
        try:
            return await serve(inner)
        except DATABASE_UNREACHABLE as e:
            if stop.is_set():
                return None
            log.warning("%s: the database is unreachable (%s); again in %.1f s", what, e, delay)
        except BROKER_UNREACHABLE as e:
            if first:
                raise  # a wrong bootstrap address stops the service at once
            if stop.is_set():
                return None
            log.warning("%s: Kafka is unreachable (%s); again in %.1f s", what, e, delay)
        finally:
            relay.cancel()
            first = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return None
        delay = min(delay * 2, MAX_DELAY_S)


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
