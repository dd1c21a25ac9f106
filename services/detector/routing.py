"""The session router's decision, pure: which node an accepted session event belongs to.

The router keeps one small row per session id — the node hosting its current incarnation — in a
table co-partitioned with ``mediacdr.sessions``. ``sessionCreated`` (re)binds the session; every
other event follows the binding. Whether the event can be applied is the node agent's call.
"""

from __future__ import annotations

from services.core.errors import UnknownSession
from services.core.validation import ValidInput

__all__ = ["route_session"]


def route_session(valid: ValidInput, bound_node: str | None) -> str:
    """The node to forward to; raises ``UnknownSession`` for a session never created."""
    if valid.event == "sessionCreated":
        return str(valid.payload["mediaNodeId"])
    if bound_node is None:
        raise UnknownSession(f"no sessionCreated seen for session {valid.key!r}")
    return bound_node
