"""The rules' storage port, and the in-memory implementation the unit tests use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from services.core.rules.state import Input, NodeState, SessionState

__all__ = ["InMemoryRulesStore", "NodeLoad", "RulesStore"]


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What the suggestion of a new node (CONTRACT §9) needs to know about a node."""

    node_id: str
    running: bool
    sessions: int


class RulesStore(Protocol):
    def get_node(self, node_id: str) -> NodeState | None: ...
    def put_node(self, node: NodeState) -> None: ...
    def get_session(self, node_id: str, session_id: str) -> SessionState | None: ...
    def put_session(self, session: SessionState) -> None: ...
    def delete_session(self, node_id: str, session_id: str) -> None: ...
    def get_waiting(self, node_id: str, number: int) -> Input | None: ...
    def put_waiting(self, node_id: str, number: int, item: Input) -> None: ...
    def delete_waiting(self, node_id: str, number: int) -> None: ...
    def set_timer(self, node_id: str, due: int | None) -> None: ...
    def loads(self) -> Iterable[NodeLoad]: ...


class InMemoryRulesStore:
    """Dicts; also what a single detector knows of other nodes' loads."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeState] = {}
        self.sessions: dict[tuple[str, str], SessionState] = {}
        self.waiting: dict[tuple[str, int], Input] = {}
        self.timers: dict[str, int] = {}

    def get_node(self, node_id: str) -> NodeState | None:
        node = self.nodes.get(node_id)
        return NodeState.from_row(node.to_row()) if node else None

    def put_node(self, node: NodeState) -> None:
        self.nodes[node.id] = NodeState.from_row(node.to_row())

    def get_session(self, node_id: str, session_id: str) -> SessionState | None:
        session = self.sessions.get((node_id, session_id))
        return SessionState.from_row(session.to_row()) if session else None

    def put_session(self, session: SessionState) -> None:
        self.sessions[(session.node, session.session_id)] = SessionState.from_row(session.to_row())

    def delete_session(self, node_id: str, session_id: str) -> None:
        self.sessions.pop((node_id, session_id), None)

    def get_waiting(self, node_id: str, number: int) -> Input | None:
        item = self.waiting.get((node_id, number))
        return Input.from_row(item.to_row()) if item else None

    def put_waiting(self, node_id: str, number: int, item: Input) -> None:
        self.waiting[(node_id, number)] = Input.from_row(item.to_row())

    def delete_waiting(self, node_id: str, number: int) -> None:
        self.waiting.pop((node_id, number), None)

    def set_timer(self, node_id: str, due: int | None) -> None:
        if due is None:
            self.timers.pop(node_id, None)
        else:
            self.timers[node_id] = due

    def loads(self) -> Iterable[NodeLoad]:
        return [NodeLoad(n.id, n.life == "running", len(n.sessions)) for n in self.nodes.values()]
