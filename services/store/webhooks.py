"""Webhook subscriptions and the delivery outbox in SQL (CONTRACT §13).

``enqueue`` writes a batch of CDR records as pending deliveries, one per interested subscription,
together with the consumed positions — one transaction, deduplicated by (subscription, ce_id).
``due`` returns the deliveries to attempt now: for each (subscription, record key) only the
earliest pending one (CDR order), so a later event of a key waits for the earlier one to be
delivered or to fail for good. ``record_attempts`` stores the results of many attempts in one
transaction (one statement per kind of result), so the sender pays a round trip per batch, not per
delivery; the sender's queries are in ``webhook_outbox``.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, select, update

from services.core.webhooks import wants
from services.store import models
from services.store import positions as positions_store
from services.store.positions import Position, dialect_insert
from services.store.webhook_outbox import Attempt, Due, OutboxTurn, Result, due_heads, record

__all__ = [
    "DEFAULT_ID",
    "Attempt",
    "Due",
    "OutboxRecord",
    "OutboxTurn",
    "Subscription",
    "UnknownSubscription",
    "WebhookStore",
]

DEFAULT_ID = "default"
WEBHOOKS = "webhooks"


class UnknownSubscription(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    #: Out of repr(): a subscription may be logged or shown in a traceback.
    secret: str | None = field(repr=False)
    headers: list[str] = field(repr=False)  # may carry credentials (Authorization: …)
    events: list[str] | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One CDR record as the webhooks service reads it."""

    event_id: str
    event: str
    key: str
    partition: int
    offset: int
    timestamp_ms: int
    body: bytes


class WebhookStore:
    def __init__(self, engine: Engine, consumer: str = WEBHOOKS) -> None:
        self.engine = engine
        self.consumer = consumer

    # -- subscriptions -------------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        t = models.webhook_subscriptions
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at, t.c.id))
            return [Subscription(**row._mapping) for row in rows]

    def get(self, subscription_id: str) -> Subscription:
        found = [s for s in self.subscriptions() if s.id == subscription_id]
        if not found:
            raise UnknownSubscription(f"no webhook subscription {subscription_id!r}")
        return found[0]

    def add(
        self,
        url: str,
        *,
        secret: str | None,
        headers: Sequence[str] = (),
        events: Sequence[str] | None = None,
        subscription_id: str | None = None,
    ) -> Subscription:
        subscription = Subscription(
            id=subscription_id or "wh_" + secrets.token_hex(6),
            url=url,
            secret=secret,
            headers=list(headers),
            events=list(events) if events else None,
            enabled=True,
            disabled_reason=None,
            created_at=datetime.now(UTC),
        )
        with self.engine.begin() as conn:
            conn.execute(models.webhook_subscriptions.insert().values(**asdict(subscription)))
        return subscription

    def put_default(
        self,
        url: str | None,
        *,
        secret: str | None,
        headers: Sequence[str],
        events: Sequence[str] | None,
    ) -> None:
        """The env-configured endpoint is the subscription ``default``; unset, it is disabled."""
        t = models.webhook_subscriptions
        with self.engine.begin() as conn:
            if url is None:
                conn.execute(
                    update(t)
                    .where(t.c.id == DEFAULT_ID)
                    .values(enabled=False, disabled_reason="MEDIACDR_WEBHOOK_ENDPOINT is unset")
                )
                return
            values = {
                "url": url,
                "secret": secret,
                "headers": list(headers),
                "events": list(events) if events else None,
            }
            # An upsert: several webhooks processes starting together all write it.
            insert = dialect_insert(conn.dialect.name, t).values(
                id=DEFAULT_ID, enabled=True, created_at=datetime.now(UTC), **values
            )
            conn.execute(insert.on_conflict_do_update(index_elements=[t.c.id], set_=values))

    def remove(self, subscription_id: str) -> None:
        """Delete a subscription and its deliveries."""
        t = models.webhook_subscriptions
        with self.engine.begin() as conn:
            conn.execute(
                delete(models.webhook_deliveries).where(
                    models.webhook_deliveries.c.subscription_id == subscription_id
                )
            )
            if not conn.execute(delete(t).where(t.c.id == subscription_id)).rowcount:
                raise UnknownSubscription(f"no webhook subscription {subscription_id!r}")

    def set_enabled(self, subscription_id: str, enabled: bool, reason: str | None = None) -> None:
        t = models.webhook_subscriptions
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(t)
                .where(t.c.id == subscription_id)
                .values(enabled=enabled, disabled_reason=None if enabled else reason)
            )
            if not changed.rowcount:
                raise UnknownSubscription(f"no webhook subscription {subscription_id!r}")

    # -- the outbox ------------------------------------------------------------------------------

    def positions(self) -> dict[Position, int]:
        return positions_store.read(self.engine, self.consumer)

    def enqueue(
        self,
        records: Sequence[OutboxRecord],
        positions: Mapping[Position, int],
        *,
        first_delay: timedelta = timedelta(0),
    ) -> int:
        """Record the deliveries ``records`` make for the subscriptions of now; returns how many
        were new. Disabled subscriptions queue too: nothing is lost while a receiver is gone."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            subs = conn.execute(
                select(models.webhook_subscriptions.c.id, models.webhook_subscriptions.c.events)
            ).all()
            rows = [
                _delivery_row(sub.id, r, now + first_delay)
                for r in records
                for sub in subs
                if wants(sub.events, r.event)
            ]
            new = 0
            if rows:
                t = models.webhook_deliveries
                # A plain executemany counted by rowcount, not RETURNING: RETURNING makes
                # SQLAlchemy send 1,000-row statements that psycopg re-parses every time,
                # about 3x the CPU per row (benchmarks/analysis.md, B5).
                statement = (
                    dialect_insert(conn.dialect.name, t)
                    .on_conflict_do_nothing(index_elements=[t.c.subscription_id, t.c.event_id])
                    .execution_options(preserve_rowcount=True)
                )
                new = conn.execute(statement, rows).rowcount
            positions_store.advance(conn, self.consumer, positions)
        return new

    def due(self, now: datetime, limit: int) -> list[Due]:
        """Heads of their (subscription, key) queue whose attempt time has come, oldest first."""
        with self.engine.connect() as conn:
            return due_heads(conn, now, limit)

    @contextmanager
    def turn(self, partitions: Collection[int] | None = None) -> Iterator[OutboxTurn]:
        """One transaction for a sender turn: store answers, then find what to send next (of
        the CDR ``partitions`` given; None: all)."""
        with self.engine.begin() as conn:
            yield OutboxTurn(conn, partitions)

    def record_attempt(
        self,
        due: Due,
        *,
        at: datetime,
        status_code: int | None,
        error: str | None,
        result: Result,
        next_attempt_at: datetime | None = None,
        disable_reason: str | None = None,
    ) -> None:
        """Store one attempt's result (see :class:`Attempt`)."""
        self.record_attempts(
            [
                Attempt(
                    due.subscription_id,
                    due.event_id,
                    at,
                    status_code,
                    error,
                    result,
                    next_attempt_at,
                    disable_reason,
                )
            ]
        )

    def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Store the results of ``attempts`` in one transaction."""
        if attempts:
            with self.engine.begin() as conn:
                record(conn, attempts)

    def replay(
        self,
        subscription_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        event_id: str | None = None,
    ) -> int:
        """Send again (same webhook-id, fresh signature) the deliveries that match; returns how
        many. Each goes back to the queue of its key, in CDR order."""
        self.get(subscription_id)
        d = models.webhook_deliveries
        query = update(d).where(d.c.subscription_id == subscription_id)
        if since is not None:
            query = query.where(d.c.occurred_at >= since)
        if until is not None:
            query = query.where(d.c.occurred_at < until)
        if event_id is not None:
            query = query.where(d.c.event_id == event_id)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            result = conn.execute(
                query.values(status="pending", attempts=0, next_attempt_at=now, delivered_at=None)
            )
            return int(result.rowcount)

    def counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per subscription and status (``pending`` is the queue depth)."""
        d = models.webhook_deliveries
        query = select(d.c.subscription_id, d.c.status, func.count()).group_by(
            d.c.subscription_id, d.c.status
        )
        found: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for sid, status, count in conn.execute(query):
                found.setdefault(sid, {})[status] = int(count)
        return found

    def pending_counts(self) -> dict[str, int]:
        """Pending deliveries per subscription (the queue depth), from the pending rows only:
        delivered rows are kept, so counting every status would scan the whole history."""
        d = models.webhook_deliveries
        query = (
            select(d.c.subscription_id, func.count())
            .where(d.c.status == "pending")
            .group_by(d.c.subscription_id)
        )
        with self.engine.connect() as conn:
            return {sid: int(count) for sid, count in conn.execute(query)}

    def deliveries(self, subscription_id: str) -> list[dict[str, Any]]:
        """Every delivery of a subscription in CDR order (for operators and tests)."""
        d = models.webhook_deliveries
        query = (
            select(d)
            .where(d.c.subscription_id == subscription_id)
            .order_by(d.c.source_partition, d.c.source_offset)
        )
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]


def _delivery_row(subscription_id: str, r: OutboxRecord, due_at: datetime) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "event_id": r.event_id,
        "event": r.event,
        "record_key": r.key,
        "source_partition": r.partition,
        "source_offset": r.offset,
        "occurred_at": datetime.fromtimestamp(r.timestamp_ms / 1000, UTC),
        "body": r.body,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": due_at,
    }
