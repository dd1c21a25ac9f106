"""The detector's write-back store: the order of its writes, and what a kill -9 between them
leaves for the replay."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import MutableMapping
from typing import Any

from services.core.rules import Input, NodeEngine, RuleSettings
from services.core.rules.outputs import Output
from services.core.rules.state import NodeState, SessionState
from services.detector.table_store import DELETED, TableRulesStore, write_in_memory
from tests.support.rules_builders import (
    GRACE_MS,
    LIVENESS_PARTITION,
    SESSIONS_PARTITION,
    T0,
    emits,
    node_connected,
    node_heartbeat,
    participant_joined,
    participant_left,
    rejects,
    session_created,
    session_destroyed,
)


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


# -- a kill -9 in the middle of a flush ----------------------------------------------------------

NODE = "media_i-0a1b2c3d4e5f60001"
S1, S2 = "ses_Before", "ses_InBatch"
ALICE, BOB = "con_EIeO06zgMz", "con_ThN5Rgi8Y8"

Tables = tuple[dict[str, Any], dict[str, Any]]
Write = tuple[bool, str, Any]  # (a node row?, key, row)


def _engine(tables: Tables, log: list[Write] | None = None) -> tuple[NodeEngine, TableRulesStore]:
    nodes, sessions = tables

    def write(table: MutableMapping[str, Any], key: str, row: Any, partition: int | None) -> Any:
        if log is not None:
            log.append((table is nodes, key, row if row is DELETED else copy.deepcopy(row)))
        return write_in_memory(table, key, row, partition)

    store = TableRulesStore(nodes, sessions, write)
    store.partition = 0
    return NodeEngine(store, RuleSettings(grace_ms=GRACE_MS)), store


def _apply(engine: NodeEngine, store: TableRulesStore, items: list[Input]) -> list[Output]:
    outputs = [out for item in items for out in engine.on_session(NODE, item)]
    asyncio.run(store.flush())
    return outputs


def _live_sessions(tables: Tables) -> dict[str, Any]:
    """The session rows the node rows vouch for: open sessions and crash tombstones."""
    nodes, sessions = tables
    open_ids = {sid for row in nodes.values() for sid in row["sessions"]}
    return {
        key: row
        for key, row in sessions.items()
        if "\x00" not in key and (row["crashed_at"] is not None or row["session_id"] in open_ids)
    }


def _cut(snapshot: Tables, log: list[Write], cut: int) -> Tables:
    """The tables as a kill -9 after the first ``cut`` writes of ``log`` leaves them."""
    survived = copy.deepcopy(snapshot)
    for is_node, key, row in log[:cut]:
        table = survived[0] if is_node else survived[1]
        if row is DELETED:
            table.pop(key, None)
        else:
            table[key] = copy.deepcopy(row)
    return survived


def test_a_kill_anywhere_in_a_flush_replays_to_the_same_state_without_dead_letters() -> None:
    """The node agent's batch is replayed after a kill -9 that left any prefix of its flush's
    writes on the changelogs: the replay dead-letters nothing the first pass did not, and ends
    in the same state (the CI failure of session 4: a sessionDestroyed's row removal was durable
    before the node row that records the offsets, and the replayed participantLeft of that
    session was dead-lettered ``unknownSession``)."""
    before: Tables = ({}, {})
    engine, store = _engine(before)
    engine.on_liveness(NODE, Input("liveness", node_connected(NODE, T0), LIVENESS_PARTITION, 1))
    _apply(engine, store, [Input("session", session_created(S1, T0 + 1, NODE), 1, 10)])
    _apply(engine, store, [Input("session", participant_joined(S1, ALICE, T0 + 2), 1, 11)])
    snapshot = copy.deepcopy(before)

    batch = [
        Input("session", payload, SESSIONS_PARTITION, offset)
        for offset, payload in enumerate(
            [
                participant_left(S1, ALICE, T0 + 3, T0 + 2),
                session_created(S2, T0 + 4, NODE),
                session_destroyed(S1, T0 + 5, T0 + 1),
                participant_joined(S2, BOB, T0 + 6),
            ],
            start=12,
        )
    ]
    log: list[Write] = []
    engine, store = _engine(before, log)
    first = _apply(engine, store, batch)
    assert not rejects(first)
    after = before

    for cut in range(len(log) + 1):
        survived = _cut(snapshot, log, cut)
        engine, store = _engine(survived)
        replay = _apply(engine, store, batch)
        assert not rejects(replay), f"kill after {cut} of {len(log)} writes: {rejects(replay)}"
        assert survived[0] == after[0], f"kill after {cut} of {len(log)} writes: node rows"
        assert _live_sessions(survived) == _live_sessions(after), f"kill after {cut} writes"


# -- waiting input (D4) across a kill -9 ------------------------------------------------------

#: the node's liveness partition is known up to here while the batch below is read
BEHIND = T0 + 1
WAITING = [
    Input("session", payload, SESSIONS_PARTITION, offset)
    for offset, payload in enumerate(
        [
            participant_joined(S1, ALICE, T0 + 60_000),
            session_created(S2, T0 + 60_001, NODE),
            participant_joined(S2, BOB, T0 + 60_002),
        ],
        start=20,
    )
]
#: the liveness that catches up with it: every waiting event is less than a grace window ahead
CATCH_UP = Input("liveness", node_heartbeat(NODE, T0 + 59_000), LIVENESS_PARTITION, 2)


def _wait_batch(engine: NodeEngine, store: TableRulesStore) -> list[Output]:
    outputs = [out for item in WAITING for out in engine.on_session(NODE, item, BEHIND)]
    asyncio.run(store.flush())
    return outputs


def _catch_up_batch(engine: NodeEngine, store: TableRulesStore) -> list[Output]:
    outputs = engine.on_liveness(NODE, CATCH_UP)
    asyncio.run(store.flush())
    return outputs


def _waiting_start() -> Tables:
    tables: Tables = ({}, {})
    engine, store = _engine(tables)
    engine.on_liveness(NODE, Input("liveness", node_connected(NODE, T0), LIVENESS_PARTITION, 1))
    _apply(engine, store, [Input("session", session_created(S1, T0 + 1, NODE), 1, 10)])
    return tables


def _bodies(outputs: list[Output]) -> list[dict[str, Any]]:
    return [e.body for e in emits(outputs, "cdr")]


def test_waiting_input_is_neither_lost_nor_applied_twice_after_a_kill_anywhere_in_a_flush() -> None:
    """Session input read while the node's liveness is behind waits in rows of its own; a kill
    -9 at any point of the flush that writes them, or of the one that applies and removes them,
    and the replay of that batch, still give every CDR copy — none twice, nothing
    dead-lettered — and the same node row."""
    start = _waiting_start()
    engine, store = _engine(start)
    assert _wait_batch(engine, store) == [], "applied before the node's liveness was known"
    waited = copy.deepcopy(start)
    released = _bodies(_catch_up_batch(engine, store))
    joined, created = "participantJoined", "sessionCreated"
    assert [b["event"] for b in released] == [joined, created, joined]
    final = start

    # 1. a kill while the waiting rows are written
    log: list[Write] = []
    tables = _waiting_start()
    engine, store = _engine(tables, log)
    _wait_batch(engine, store)
    for cut in range(len(log) + 1):
        survived = _cut(_waiting_start(), log, cut)
        engine, store = _engine(survived)
        assert _wait_batch(engine, store) == []
        out = _catch_up_batch(engine, store)
        assert not rejects(out), f"kill after {cut} of {len(log)} writes: {rejects(out)}"
        assert _bodies(out) == released, f"kill after {cut} of {len(log)} writes"
        assert survived[0] == final[0], f"kill after {cut} of {len(log)} writes: node rows"

    # 2. a kill while they are applied and removed: the batch's outputs were sent before
    log = []
    tables = copy.deepcopy(waited)
    engine, store = _engine(tables, log)
    _catch_up_batch(engine, store)
    for cut in range(len(log) + 1):
        survived = _cut(waited, log, cut)
        engine, store = _engine(survived)
        replay = _catch_up_batch(engine, store)
        assert not rejects(replay), f"kill after {cut} of {len(log)} writes: {rejects(replay)}"
        assert all(b in released for b in _bodies(replay)), f"kill after {cut} writes"
        assert survived[0] == final[0], f"kill after {cut} of {len(log)} writes: node rows"
        assert _live_sessions(survived) == _live_sessions(final), f"kill after {cut} writes"


def test_a_node_row_from_before_waiting_rows_still_loads() -> None:
    row = NodeState(id=NODE).to_row()
    for key in ("waiting_first", "waiting_next", "waiting_head_at"):
        del row[key]
    row["waiting"] = []
    assert NodeState.from_row(row) == NodeState(id=NODE)
