"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.

The secret is ``whsec_`` + base64 of the key bytes (https://www.standardwebhooks.com).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from services.core.errors import MediaCdrError

__all__ = ["PREFIX", "InvalidSecret", "decode_secret", "new_secret", "sign", "webhook_headers"]

PREFIX = "whsec_"


class InvalidSecret(MediaCdrError):
    """A webhook secret that is not ``whsec_`` followed by base64."""


def new_secret() -> str:
    """A fresh secret with a 32-byte key."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def decode_secret(secret: str) -> bytes:
    """The key bytes of ``secret`` (``whsec_`` prefix optional, as in the reference library)."""
    encoded = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidSecret("a webhook secret is whsec_ followed by base64") from error
    if len(key) < 16:
        raise InvalidSecret("a webhook secret needs at least 16 bytes of key")
    return key


def sign(key: bytes, message_id: str, timestamp_s: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    *,
    message_id: str,
    timestamp_s: int,
    body: bytes,
    key: bytes | None,
    custom: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """The headers of one attempt: custom ones first, then the ones receivers verify."""
    headers = [(name, value) for name, value in custom]
    headers += [
        ("content-type", "application/json"),
        ("webhook-id", message_id),
        ("webhook-timestamp", str(timestamp_s)),
    ]
    if key is not None:
        headers.append(("webhook-signature", sign(key, message_id, timestamp_s, body)))
    return headers
