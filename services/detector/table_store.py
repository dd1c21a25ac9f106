"""The rules' store over Faust tables, with a write-back cache.

The node agent computes a decision's records, sends them, and only then writes the state
(`flush`): changelog records therefore never reach Kafka ahead of the outputs they stand for,
and a replay after a kill -9 cannot find state claiming work whose records were never sent.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from services.core.rules.ports import NodeLoad
from services.core.rules.state import NodeState, SessionState

__all__ = ["TableRulesStore"]

_DELETED = object()


def session_key(node_id: str, session_id: str) -> str:
    return f"{node_id}\x1f{session_id}"


class TableRulesStore:
    """One per worker. ``partition`` is the internal partition of the event being processed."""

    def __init__(
        self,
        nodes: MutableMapping[str, Any],
        sessions: MutableMapping[str, Any],
    ) -> None:
        self.nodes = nodes
        self.sessions = sessions
        self.partition: int | None = None
        self.timers: dict[int, dict[str, int]] = {}
        self.known_loads: dict[str, NodeLoad] = {}
        #: node → its liveness partition, so a mark needs no row read per pending node
        self.liveness_partitions: dict[str, int | None] = {}
        #: nodes in their grace window → their internal partition (``mediacdr_open_incidents``)
        self.in_grace: dict[str, int | None] = {}
        self._dirty_nodes: dict[str, Any] = {}
        self._dirty_sessions: dict[str, Any] = {}

    # -- RulesStore -------------------------------------------------------------------------

    def get_node(self, node_id: str) -> NodeState | None:
        row = self._dirty_nodes.get(node_id) or self.nodes.get(node_id)
        return NodeState.from_row(row) if row else None

    def put_node(self, node: NodeState) -> None:
        node.home_partition = self.partition
        self._dirty_nodes[node.id] = node.to_row()
        self._remember(node)

    def get_session(self, node_id: str, session_id: str) -> SessionState | None:
        key = session_key(node_id, session_id)
        row = self._dirty_sessions.get(key, None)
        if row is _DELETED:
            return None
        row = row or self.sessions.get(key)
        return SessionState.from_row(row) if row else None

    def put_session(self, session: SessionState) -> None:
        self._dirty_sessions[session_key(session.node, session.session_id)] = session.to_row()

    def delete_session(self, node_id: str, session_id: str) -> None:
        self._dirty_sessions[session_key(node_id, session_id)] = _DELETED

    def set_timer(self, node_id: str, due: int | None) -> None:
        if self.partition is None:
            return
        timers = self.timers.setdefault(self.partition, {})
        if due is None:
            timers.pop(node_id, None)
        else:
            timers[node_id] = due

    def loads(self) -> Iterable[NodeLoad]:
        return self.known_loads.values()

    # -- adapter ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the state changed since the last flush into the tables (inside the stream)."""
        for node_id, row in self._dirty_nodes.items():
            self.nodes[node_id] = row
        for key, row in self._dirty_sessions.items():
            if row is _DELETED:
                self.sessions.pop(key, None)
            else:
                self.sessions[key] = row
        self._dirty_nodes.clear()
        self._dirty_sessions.clear()

    def rebuild_timers(self, partition: int, due: Any) -> None:
        """After a rebalance: the timers of the nodes this worker now owns on ``partition``."""
        timers: dict[str, int] = {}
        for node_id, row in list(self.nodes.items()):
            if row.get("home_partition") != partition:
                continue
            node = NodeState.from_row(row)
            when = due(node)
            if when is not None:
                timers[node_id] = when
            self._remember(node)
        self.timers[partition] = timers

    def open_incidents(self) -> float:
        """Nodes in their grace window on the partitions this worker owns (read by the metrics
        thread: one ``len``)."""
        return len(self.in_grace)

    def keep_partitions(self, owned: set[int]) -> None:
        """After a rebalance: forget the open incidents of partitions owned no more."""
        self.in_grace = {n: p for n, p in list(self.in_grace.items()) if p in owned}

    def _remember(self, node: NodeState) -> None:
        self.known_loads[node.id] = NodeLoad(node.id, node.life == "running", len(node.sessions))
        self.liveness_partitions[node.id] = node.liveness_partition
        if node.life == "grace":
            self.in_grace[node.id] = node.home_partition
        else:
            self.in_grace.pop(node.id, None)
