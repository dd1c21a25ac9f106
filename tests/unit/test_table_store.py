"""The detector's write-back store: session rows are durable before node rows are written."""

from __future__ import annotations

import asyncio
from typing import Any

from services.core.rules.state import NodeState, SessionState
from services.detector.table_store import TableRulesStore


def test_node_rows_wait_until_the_session_rows_are_durable() -> None:
    async def scenario() -> list[str]:
        written: list[str] = []
        pending: list[asyncio.Future[None]] = []

        def write(table: dict[str, Any], key: str, row: Any, partition: int | None) -> Any:
            table[key] = row
            written.append("node" if table is nodes else "session")
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pending.append(done)
            return done

        nodes: dict[str, Any] = {}
        sessions: dict[str, Any] = {}
        store = TableRulesStore(nodes, sessions, write)
        store.partition = 0
        store.put_session(SessionState("s1", "s1_1", 1, "n1"))
        store.put_node(NodeState(id="n1"))
        flushing = asyncio.create_task(store.flush())
        await asyncio.sleep(0)
        assert written == ["session"], "a node row was written before its session rows"
        pending[0].set_result(None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert written == ["session", "node"]
        pending[1].set_result(None)
        await flushing
        assert "n1" in nodes and any(k.endswith("s1") for k in sessions)
        return written

    assert asyncio.run(scenario()) == ["session", "node"]
