"""The router's decisions, pure: which node an accepted session event belongs to.

The router keeps one small record per session id (the hosting node and the ``uniqueSessionId``
of its current incarnation) in a table co-partitioned with ``mediacdr.sessions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.core.cdr import unique_session_id
from services.core.errors import UnknownSession
from services.core.validation import ValidInput

__all__ = ["Route", "RouteDecision", "route_from_row", "route_session", "route_to_row"]


@dataclass(frozen=True, slots=True)
class Route:
    node: str
    unique_session_id: str
    created_at: int


@dataclass(frozen=True, slots=True)
class RouteDecision:
    route: Route
    changed: bool


def route_session(valid: ValidInput, current: Route | None) -> RouteDecision:
    """``sessionCreated`` (re)binds the session to its node; other events follow the binding."""
    payload = valid.payload
    if valid.event == "sessionCreated":
        usid = payload.get("uniqueSessionId") or unique_session_id(valid.key, valid.timestamp)
        route = Route(str(payload["mediaNodeId"]), str(usid), valid.timestamp)
        return RouteDecision(route, changed=route != current)
    if current is None:
        raise UnknownSession(f"no sessionCreated seen for session {valid.key!r}")
    return RouteDecision(current, changed=False)


def route_to_row(route: Route) -> dict[str, Any]:
    return {"node": route.node, "usid": route.unique_session_id, "created": route.created_at}


def route_from_row(row: dict[str, Any] | None) -> Route | None:
    if row is None:
        return None
    return Route(row["node"], row["usid"], row["created"])
