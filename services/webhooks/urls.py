"""The webhook URL policy with the system resolver: what the CLI, the API and the service's
own configuration check a subscription's URL with (``services/core/webhooks/urls.py``)."""

from __future__ import annotations

import socket

from services.core.webhooks.urls import InvalidWebhookUrl, check_webhook_url

__all__ = ["InvalidWebhookUrl", "checked_url", "resolve_host"]


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to now; empty when it does not resolve."""
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in found})


def checked_url(url: str, *, allow_private: bool) -> str:
    """``url`` if a subscription may have it; raises ``InvalidWebhookUrl`` saying why."""
    return check_webhook_url(url, allow_private=allow_private, resolve=resolve_host)
