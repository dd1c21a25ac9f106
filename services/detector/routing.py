"""The session router's decisions, pure: which node an accepted event belongs to, and which
internal partition carries that node.

The router keeps one small row per session id — the node hosting its current incarnation — in a
table co-partitioned with ``mediacdr.sessions``. ``sessionCreated`` (re)binds the session; every
other event follows the binding. Whether the event can be applied is the node agent's call.

``sessionDestroyed`` does not delete the row: it marks it *ended* at its input offset. The table
can be ahead of the read positions (``services.detector.positions``), so after a kill -9 the
router can re-read records it already forwarded; a re-read record at or below the end still
goes to its node (whose agent skips what it applied) instead of being dead-lettered
``unknownSession`` the second time round. An ended row is removed once the durable read
position of its partition has passed it (``prunable``).
"""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import murmur2

from services.core.errors import UnknownSession
from services.core.validation import ValidInput

__all__ = ["Route", "bind", "key_partition", "node_partition", "prunable", "route_session"]

#: a ``session-routes`` row: ``{"node": …}``, plus ``"ended"`` (offset) and ``"p"`` (partition)
#: once its ``sessionDestroyed`` was routed
Route = dict[str, Any]


def route_session(valid: ValidInput, route: Route | None, offset: int) -> str:
    """The node to forward to; raises ``UnknownSession`` for a session never created, or ended
    before ``offset``."""
    if valid.event == "sessionCreated":
        return str(valid.payload["mediaNodeId"])
    if route is None:
        raise UnknownSession(f"no sessionCreated seen for session {valid.key!r}")
    if "ended" in route and offset > route["ended"]:
        raise UnknownSession(f"session {valid.key!r} was destroyed (no sessionCreated since)")
    return str(route["node"])


def bind(event: str, node: str, route: Route | None, partition: int, offset: int) -> Route | None:
    """The row after routing ``event`` at ``offset``, or None when it does not change."""
    if event == "sessionCreated":
        if route is None or "ended" in route or route["node"] != node:
            return {"node": node}
    elif event == "sessionDestroyed" and route is not None and "ended" not in route:
        return {"node": node, "ended": offset, "p": partition}
    return None


def prunable(route: Route | None, partition: int, position: int) -> bool:
    """An ended row no re-read can need: its partition's durable read position is past its
    end, so every record up to the end is a replay, skipped (``services.detector.positions``).
    Not the committed offset: Faust can commit past records it skipped, which are read again."""
    return (
        route is not None
        and route.get("p") == partition
        and "ended" in route
        and int(route["ended"]) < position
    )


def node_partition(node_id: str, partitions: int) -> int:
    """The internal partition of a node: Kafka's default partitioner applied to the node id, so
    a node stays where a record keyed by its id would have gone (and where its state lives)."""
    return key_partition(node_id.encode("utf-8"), partitions)


def key_partition(key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner (aiokafka's ``DefaultPartitioner``) puts a keyed record
    on a topic of ``partitions`` partitions."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
