"""The receiver code in docs/WEBHOOKS.md verifies what mediacdr signs, and nothing else."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from services.core.webhooks import decode_secret, new_secret, webhook_headers

DOC = Path(__file__).resolve().parents[2] / "docs" / "WEBHOOKS.md"
BODY = b'{"event":"nodeCrashed","timestamp":1622548109518,"id":"media_i-1"}'


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def signed(secret: str, stamp: int) -> dict[str, str]:
    return dict(
        webhook_headers(message_id="evt-1", timestamp_s=stamp, body=BODY, key=decode_secret(secret))
    )


def test_the_standard_library_receiver_verifies_our_signatures() -> None:
    namespace: dict[str, Any] = {}
    exec(snippets()[1], namespace)  # the documented code, as written
    verify = namespace["verify"]
    secret = new_secret()
    now = int(time.time())
    assert verify(secret, signed(secret, now), BODY)
    assert not verify(secret, signed(secret, now), BODY + b" ")
    assert not verify(new_secret(), signed(secret, now), BODY)
    assert not verify(secret, signed(secret, now - 3600), BODY)  # stale


def test_the_reference_library_receiver_verifies_our_signatures() -> None:
    secret = new_secret()
    code = snippets()[0].replace('"whsec_…"', repr(secret))
    namespace: dict[str, Any] = {"body_bytes": BODY, "headers": signed(secret, int(time.time()))}
    exec(code, namespace)
    assert namespace["event"]["event"] == "nodeCrashed"
