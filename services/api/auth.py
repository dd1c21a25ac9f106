"""API authentication: ``Authorization: Bearer <secret>`` or HTTP Basic ``mediacdr:<secret>``."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

__all__ = ["USER", "authorized", "is_loopback", "split_addr"]

USER = "mediacdr"


def authorized(secret: str | None, header: str | None) -> bool:
    """Whether ``header`` (the Authorization header) carries ``secret``; constant-time."""
    if secret is None:
        return True
    if not header:
        return False
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return hmac.compare_digest(credentials.strip().encode(), secret.encode())
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        same_user = hmac.compare_digest(user.encode(), USER.encode())
        same_secret = hmac.compare_digest(password.encode(), secret.encode())
        return same_user and same_secret
    return False


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → ``(host, port)``."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"MEDIACDR_API_ADDR is host:port, not {addr!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
