"""The rules' store over Faust tables, with a write-back cache.

The node agent computes a batch's records, sends them, waits for the broker to acknowledge them,
and only then writes the state (`flush`): changelog records never reach Kafka ahead of the
outputs they stand for. Within the state, session rows are made durable before the node rows:
a node row holds the input offsets already applied (the replay skip), so it must never survive
a kill -9 that the session rows it accounts for did not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from services.core.rules.ports import NodeLoad
from services.core.rules.state import Input, NodeState, SessionState

__all__ = ["DELETED", "TableRulesStore", "write_durably", "write_in_memory"]

DELETED = object()

#: writes one row (``DELETED`` removes it) of a table on an internal partition; the result
#: resolves once the write is durable
RowWriter = Callable[[MutableMapping[str, Any], str, Any, int | None], Awaitable[Any]]


#: a changed row not yet written (``DELETED`` for a removal), with its internal partition
Dirty = tuple[Any, int | None]


def write_durably(table: Any, key: str, row: Any, partition: int | None) -> Awaitable[Any]:
    """A Faust table write whose changelog record can be awaited.

    ``table[key] = row`` hands the changelog record to Faust's producer buffer, which Faust's
    own commit flushes only on a best-effort basis (``ProducerBuffer.flush_atmost`` gives up
    after 0.1 s without progress). So the row goes into the table's store directly, and the
    changelog record through ``Table.send_changelog`` — what ``__setitem__`` does — keeping the
    future that resolves when the broker has it.
    """
    if row is DELETED:
        table.data.pop(key, None)
        return table.send_changelog(partition, key, None, value_serializer="raw")  # type: ignore[no-any-return]
    table.data[key] = row
    return table.send_changelog(partition, key, row)  # type: ignore[no-any-return]


async def _done() -> None:
    return None


def write_in_memory(
    table: MutableMapping[str, Any], key: str, row: Any, partition: int | None
) -> Awaitable[Any]:
    """For plain dicts (tests, tools)."""
    if row is DELETED:
        table.pop(key, None)
    else:
        table[key] = row
    return _done()


def session_key(node_id: str, session_id: str) -> str:
    return f"{node_id}\x1f{session_id}"


def waiting_key(node_id: str, number: int) -> str:
    """A waiting input's row, beside the node's session rows (a NUL is in no session id: every
    parser refuses it)."""
    return f"{node_id}\x1f\x00{number}"


class TableRulesStore:
    """One per worker. ``partition`` is the internal partition of the event being processed."""

    def __init__(
        self,
        nodes: MutableMapping[str, Any],
        sessions: MutableMapping[str, Any],
        write: RowWriter = write_in_memory,
    ) -> None:
        self.nodes = nodes
        self.sessions = sessions
        self.write = write
        self.partition: int | None = None
        self.timers: dict[int, dict[str, int]] = {}
        self.known_loads: dict[str, NodeLoad] = {}
        #: node → its liveness partition, so a mark needs no row read per pending node
        self.liveness_partitions: dict[str, int | None] = {}
        #: nodes in their grace window → their internal partition (``mediacdr_open_incidents``)
        self.in_grace: dict[str, int | None] = {}
        self._dirty_nodes: dict[str, Dirty] = {}
        self._dirty_sessions: dict[str, Dirty] = {}

    # -- RulesStore -------------------------------------------------------------------------

    def get_node(self, node_id: str) -> NodeState | None:
        dirty = self._dirty_nodes.get(node_id)
        row = dirty[0] if dirty else self.nodes.get(node_id)
        return NodeState.from_row(row) if row else None

    def put_node(self, node: NodeState) -> None:
        node.home_partition = self.partition
        self._dirty_nodes[node.id] = (node.to_row(), self.partition)
        self._remember(node)

    def get_session(self, node_id: str, session_id: str) -> SessionState | None:
        row = self._session_row(session_key(node_id, session_id))
        return SessionState.from_row(row) if row else None

    def put_session(self, session: SessionState) -> None:
        key = session_key(session.node, session.session_id)
        self._dirty_sessions[key] = (session.to_row(), self.partition)

    def delete_session(self, node_id: str, session_id: str) -> None:
        self._dirty_sessions[session_key(node_id, session_id)] = (DELETED, self.partition)

    def get_waiting(self, node_id: str, number: int) -> Input | None:
        row = self._session_row(waiting_key(node_id, number))
        return Input.from_row(row) if row else None

    def put_waiting(self, node_id: str, number: int, item: Input) -> None:
        self._dirty_sessions[waiting_key(node_id, number)] = (item.to_row(), self.partition)

    def delete_waiting(self, node_id: str, number: int) -> None:
        self._dirty_sessions[waiting_key(node_id, number)] = (DELETED, self.partition)

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

    def _session_row(self, key: str) -> Any:
        """A row of the ``node-sessions`` table as this batch left it (None: no row)."""
        dirty = self._dirty_sessions.get(key)
        row = dirty[0] if dirty else self.sessions.get(key)
        return None if row is DELETED else row

    # -- adapter ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write the state changed since the last flush into the tables (inside the stream),
        each row to the internal partition that was being processed when it changed, in three
        steps, each once the broker has the one before:

        1. the session and waiting-input rows written — a node row must not vouch for rows not
           yet durable;
        2. the node rows, which record the input offsets applied (what a replay skips);
        3. the rows removed (``sessionDestroyed``, waiting input applied): a removal durable
           before its node row would leave the replay of the session's last records nothing to
           skip them by, and they would be dead-lettered ``unknownSession``.

        A kill -9 between steps 2 and 3 leaves the removed rows behind; the engine ignores a
        session row its node row does not list (``NodeEngine._session``), and a later
        ``sessionCreated`` of the same id overwrites it. A waiting-input row left so is never
        read again (its number is below the node's ``waiting_first``): a few rows per such
        kill, not a correctness matter."""
        removed = {k: d for k, d in self._dirty_sessions.items() if d[0] is DELETED}
        written = {k: d for k, d in self._dirty_sessions.items() if d[0] is not DELETED}
        self._dirty_sessions.clear()
        await self._write(self.sessions, written)
        await self._write(self.nodes, self._dirty_nodes)
        await self._write(self.sessions, removed)

    async def _write(self, table: MutableMapping[str, Any], rows: dict[str, Dirty]) -> None:
        if not rows:
            return
        written = [self.write(table, key, row, part) for key, (row, part) in rows.items()]
        rows.clear()
        await asyncio.gather(*written)

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
