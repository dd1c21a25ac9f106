"""A webhook's signing secret and extra headers stay out of repr(): subscriptions and deliveries
end up in logs and tracebacks."""

from __future__ import annotations

from datetime import UTC, datetime

from services.store.webhook_outbox import Due
from services.store.webhooks import Subscription

SECRET = "whsec_never-shown"
HEADER = "Authorization: Bearer header-token"


def test_a_subscription_repr_shows_neither_secret_nor_headers() -> None:
    created = datetime(2024, 1, 1, tzinfo=UTC)
    sub = Subscription("s1", "https://x.test/h", SECRET, [HEADER], None, True, None, created)
    shown = repr(sub)
    assert SECRET not in shown and "header-token" not in shown
    assert "https://x.test/h" in shown
    assert sub.secret == SECRET and sub.headers == [HEADER]


def test_a_due_delivery_repr_shows_neither_secret_nor_headers() -> None:
    due = Due("s1", "e1", "k", 7, b"{}", 0, "https://x.test/h", SECRET, [HEADER])
    shown = repr(due)
    assert SECRET not in shown and "header-token" not in shown
    assert due.secret == SECRET and due.headers == [HEADER]
