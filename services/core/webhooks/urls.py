"""Which URLs a webhook subscription may have (docs/RELIABILITY.md, Security), pure.

``http`` and ``https`` only, with a host and without ``user:password@`` (the API and the CLI
show a subscription's URL; credentials belong in a header, which they never show). With
``allow_private`` off, the host must also be a public address — given as one, or what its name
resolves to when the subscription is created — so the API cannot be used to make mediacdr
send requests into the network it runs in (loopback, private ranges, link-local, cloud
metadata addresses…). Resolution is the caller's: this module does no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from services.core.errors import MediaCdrError

__all__ = ["InvalidWebhookUrl", "Resolver", "check_webhook_url", "is_public_address"]

#: Host name → the IP addresses it resolves to (empty when it does not resolve).
Resolver = Callable[[str], Iterable[str]]
MAX_URL_LENGTH = 2048


class InvalidWebhookUrl(MediaCdrError):
    """A webhook URL that the policy refuses; the message says why."""


def check_webhook_url(url: str, *, allow_private: bool, resolve: Resolver) -> str:
    """``url`` if a subscription may have it; raises :class:`InvalidWebhookUrl`."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidWebhookUrl("a webhook URL is at most 2048 characters, without spaces")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as e:
        raise InvalidWebhookUrl(f"not a URL: {e}") from e
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidWebhookUrl("a webhook URL must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise InvalidWebhookUrl("a webhook URL needs a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl(
            "a webhook URL may not hold user:password@; send credentials in a header "
            "(--header / headers), which is never shown again"
        )
    if not allow_private:
        _check_public(host, resolve)
    return url


def is_public_address(text: str) -> bool:
    """Whether ``text`` is an IP address a webhook may be sent to under
    ``MEDIACDR_WEBHOOK_ALLOW_PRIVATE=false``: global and not multicast."""
    address = _address(text)
    return address is not None and address.is_global and not address.is_multicast


def _check_public(host: str, resolve: Resolver) -> None:
    literal = _address(host)
    addresses = [literal] if literal is not None else [_address(a) for a in resolve(host)]
    if not addresses or None in addresses:
        raise InvalidWebhookUrl(
            f"cannot tell whether {host} is a public address (it does not resolve); "
            "MEDIACDR_WEBHOOK_ALLOW_PRIVATE=false refuses it"
        )
    for address in addresses:
        if not is_public_address(str(address)):
            raise InvalidWebhookUrl(
                f"{host} is not a public address ({address}); "
                "MEDIACDR_WEBHOOK_ALLOW_PRIVATE=false refuses loopback, private, link-local "
                "and reserved addresses"
            )


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address
