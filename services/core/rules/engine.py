"""The node engine: grace rules R1–R8 and the crash cascade, decided on event time only.

Three entry points, each for one media node: :meth:`NodeEngine.on_liveness`,
:meth:`NodeEngine.on_session` and :meth:`NodeEngine.advance` (event-time progress, the
watermark). While an incident is open, events stamped at or after its deadline are *held* in the
node's state and applied once the incident is decided, so the outcome never depends on how
records of different partitions interleave (R8).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.cdr import cdr_copy, unique_session_id
from services.core.codec import ce_id
from services.core.errors import (
    Duplicate,
    RejectedInput,
    SessionAlreadyOpen,
    StaleAfterCrash,
    StaleEvent,
    UnknownSession,
)
from services.core.rules import bodies
from services.core.rules.cascade import session_cascade
from services.core.rules.outputs import Emit, Output, Reject
from services.core.rules.ports import RulesStore
from services.core.rules.sessions import apply_to_session
from services.core.rules.state import DESCRIPTION_FIELDS, Incident, Input, NodeState, SessionState

__all__ = ["NodeEngine", "RuleSettings"]

_PLANNED = frozenset({"terminating", "terminated"})
_RECENT_IDS = 32


@dataclass(frozen=True, slots=True)
class RuleSettings:
    grace_ms: int = 3000
    heartbeat_timeout_ms: int = 0
    reconnection_timeout_s: int = -1


class NodeEngine:
    def __init__(self, store: RulesStore, settings: RuleSettings) -> None:
        self.store = store
        self.settings = settings

    # -- entry points ---------------------------------------------------------------------

    def on_liveness(self, node_id: str, item: Input) -> list[Output]:
        node = self._node(node_id)
        if node.liveness_partition == item.source_partition and (
            item.source_offset <= node.liveness_offset
        ):
            return []  # a replay of what was applied before a restart
        node.liveness_partition = item.source_partition
        node.liveness_offset = item.source_offset
        # Waiting session input stamped before this event comes before it in event time.
        out = self._catch_up(node, item.timestamp, before=True)
        out += self._liveness(node, item)
        out += self._catch_up(node, item.timestamp)
        if node.held and node.incident is None and node.life == "running":
            out += self._release(node)  # a sign of life settles what a possible silence held
        return self._save(node, out)

    def on_session(
        self, node_id: str, item: Input, liveness_until: int | None = None
    ) -> list[Output]:
        """``liveness_until``: every liveness record of the node's partition stamped before it
        has been applied (the adapter's mark); None when input arrives in event-time order.

        R8 across partitions: a session event stamped *t* may only be applied once the node's
        liveness is known up to *t* − grace — otherwise a disconnection whose deadline is at or
        before *t* may still be unread, and the event would be applied outside the incident
        that should hold it. Until then it waits, in arrival order, in a row of its own.
        """
        node = self._node(node_id)
        partition = str(item.source_partition)
        if item.source_offset <= node.session_offsets.get(partition, -1):
            return []  # R9: re-processed; its effect (or its dead letter) is already there
        node.session_offsets[partition] = item.source_offset
        if liveness_until is not None and (
            node.waiting_head_at is not None
            or not self._liveness_known(node, item.timestamp, liveness_until)
        ):
            self._wait(node, item)
            return self._save(node, [])
        out = self._session(node, item)
        return self._save(node, out)

    def advance(self, node_id: str, watermark: int) -> list[Output]:
        """Everything stamped before ``watermark`` has been applied: decide what is due."""
        node = self._node(node_id)
        out = self._catch_up(node, watermark)
        while (due := self._decision_due(node)) is not None and due <= watermark:
            out += self._decide(node, due)
        return self._save(node, out)

    def due(self, node: NodeState) -> int | None:
        """The event time of the node's next decision (or of its waiting input), if any."""
        decision = self._decision_due(node)
        if node.waiting_head_at is None:
            return decision
        ready = node.waiting_head_at - self.settings.grace_ms + 1
        return ready if decision is None else min(ready, decision)

    def _decision_due(self, node: NodeState) -> int | None:
        if node.incident is not None:
            return node.incident.deadline
        if node.life == "crashed" and node.removal_at is not None:
            return node.removal_at
        return self._silence_due(node)

    def _liveness_known(self, node: NodeState, t: int, liveness_until: int) -> bool:
        """Whether every liveness event of the node stamped at or before ``t`` − grace has been
        applied: its latest one is later, or the mark says so."""
        latest = node.last_liveness_at
        known = liveness_until if latest is None else max(latest, liveness_until)
        return t - self.settings.grace_ms < known

    def _catch_up(self, node: NodeState, known: int, *, before: bool = False) -> list[Output]:
        """Apply the waiting session input the node's liveness now covers, in arrival order:
        stamped before ``known`` (``before``: a liveness event stamped ``known`` is next), or
        else less than a grace window after it."""
        out: list[Output] = []
        while (t := node.waiting_head_at) is not None:
            if t >= known if before else not self._liveness_known(node, t, known):
                break
            out += self._session(node, self._next_waiting(node))
        return out

    def _wait(self, node: NodeState, item: Input) -> None:
        if node.waiting_head_at is None:
            node.waiting_head_at = item.timestamp
        self.store.put_waiting(node.id, node.waiting_next, item)
        node.waiting_next += 1

    def _next_waiting(self, node: NodeState) -> Input:
        """Take the first waiting input (its row is removed) and move the head on."""
        item = self.store.get_waiting(node.id, node.waiting_first)
        assert item is not None, f"waiting input {node.waiting_first} of {node.id} is missing"
        self.store.delete_waiting(node.id, node.waiting_first)
        node.waiting_first += 1
        node.waiting_head_at = None
        if node.waiting_first < node.waiting_next:
            head = self.store.get_waiting(node.id, node.waiting_first)
            assert head is not None, f"waiting input {node.waiting_first} of {node.id} is missing"
            node.waiting_head_at = head.timestamp
        return item

    def _silence_due(self, node: NodeState) -> int | None:
        """R4: when a running, heartbeating node's silence becomes an incident."""
        h = self.settings.heartbeat_timeout_ms
        silent_watch = node.heartbeating and not node.planned_shutdown
        if node.life == "running" and h > 0 and silent_watch and node.last_liveness_at:
            return node.last_liveness_at + h
        return None

    # -- liveness (R1–R7) -----------------------------------------------------------------

    def _liveness(self, node: NodeState, item: Input) -> list[Output]:
        t = item.timestamp
        if node.last_liveness_at is not None and t < node.last_liveness_at:
            detail = f"stamped {t}, before the node's latest liveness event {node.last_liveness_at}"
            return [Reject(item, StaleEvent.code, detail)]
        out = self._silence_proved(node, t)
        if self._must_hold(node, item):
            node.held.append(item.to_row())
            return out
        node.last_liveness_at = t
        out += self._describe(node, item)
        if item.event == "mediaNodeStatusChanged":
            out.append(Emit("cdr", node.id, item.payload, node.id))
        if node.incident is not None:
            return out + self._during_incident(node, item)
        if node.life == "crashed":
            return out + self._after_crash(node, item)
        if node.life == "removed":
            return out + self._after_removal(node, item)
        return out + self._running(node, item)

    def _silence_proved(self, node: NodeState, t: int) -> list[Output]:
        """R4 under R8: the node's liveness is in order, so an event stamped after the silence
        deadline proves the silence whether or not a watermark passed it yet: open it first."""
        due = self._silence_due(node)
        if due is None or t < due:
            return []
        return self._open(node, due, "silent")

    def _must_hold(self, node: NodeState, item: Input) -> bool:
        if node.incident is not None:
            return item.timestamp >= node.incident.deadline
        silence = self._silence_due(node)
        if silence is not None and item.kind == "session":
            # R8: a silence incident may still open at `silence`; its deadline is not known
            # to be passed until the watermark or a liveness event says so.
            return item.timestamp >= silence + self.settings.grace_ms
        if node.life != "crashed" or node.removal_at is None:
            return False
        # Liveness from the removal on waits for it; so does session input that an incident
        # opened by such liveness could close (stamped at least a grace window later).
        grace = 0 if item.kind == "liveness" else self.settings.grace_ms
        return item.timestamp >= node.removal_at + grace

    def _running(self, node: NodeState, item: Input) -> list[Output]:
        event, t = item.event, item.timestamp
        if event == "nodeConnected":
            node.planned_shutdown = False
        elif event == "nodeHeartbeat":
            node.heartbeating = True
        elif event == "mediaNodeStatusChanged":
            node.last_status = str(item.payload["newStatus"])
            node.planned_shutdown = node.last_status in _PLANNED
        elif event == "nodeDisconnected" and not node.planned_shutdown:
            return self._open(node, t, "disconnected")
        return []

    def _open(self, node: NodeState, at: int, cause: str) -> list[Output]:
        incident = Incident(at, at + self.settings.grace_ms, cause, node.id)  # type: ignore[arg-type]
        node.incident = incident
        node.life = "grace"
        node.heartbeats_in_incident = 0
        return [
            Emit("nodes", node.id, bodies.incident_opened(incident), node.id, incident.incident_id)
        ]

    def _during_incident(self, node: NodeState, item: Input) -> list[Output]:
        incident = node.incident
        assert incident is not None
        if item.event == "nodeConnected" or incident.cause == "silent":
            return self._blip(node, incident, item.timestamp)
        if item.event == "nodeHeartbeat":
            node.heartbeats_in_incident += 1
        elif item.event == "mediaNodeStatusChanged":
            node.last_status = str(item.payload["newStatus"])
        return []

    def _blip(self, node: NodeState, incident: Incident, at: int) -> list[Output]:
        """R2: reconnected inside the grace window; no CDR event, a node fact only."""
        node.incident = None
        node.life = "running"
        node.planned_shutdown = False
        fact = bodies.incident_closed(incident, "reconnected", at)
        return [Emit("nodes", node.id, fact, node.id, incident.incident_id), *self._release(node)]

    def _after_crash(self, node: NodeState, item: Input) -> list[Output]:
        crash = node.crash
        reconnection = item.event == "nodeConnected" or (
            crash is not None and crash.cause == "silent"
        )
        if item.event == "mediaNodeStatusChanged":
            node.last_status = str(item.payload["newStatus"])
        if not reconnection:
            return []
        iid = crash.incident_id if crash is not None else None
        node.life, node.crash, node.removal_at = "running", None, None
        node.planned_shutdown = False
        return [Emit("cdr", node.id, bodies.node_recovered(node, item.timestamp), node.id, iid)]

    def _after_removal(self, node: NodeState, item: Input) -> list[Output]:
        if item.event == "nodeConnected":  # R6: a new life, no nodeRecovered
            node.life, node.last_status, node.planned_shutdown = "running", None, False
            node.heartbeating = False
        elif item.event == "mediaNodeStatusChanged":
            node.last_status = str(item.payload["newStatus"])
        return []

    def _describe(self, node: NodeState, item: Input) -> list[Output]:
        if item.event not in ("nodeConnected", "mediaNodeStatusChanged"):
            return []
        changed = False
        for key in DESCRIPTION_FIELDS:
            value = item.payload.get(key)
            if value is not None and value != node.description.get(key):
                node.description[key] = value
                changed = True
        if not changed:
            return []
        return [Emit("nodes", node.id, bodies.node_described(node, item.timestamp), node.id)]

    # -- decisions (R3, R4, R6) -----------------------------------------------------------

    def _decide(self, node: NodeState, due: int) -> list[Output]:
        if node.incident is not None:
            out = self._crash(node, node.incident)
        elif node.life == "crashed":
            out = self._remove(node, due)
        else:
            out = self._open(node, due, "silent")
        return out + self._release(node)

    def _crash(self, node: NodeState, incident: Incident) -> list[Output]:
        hosted = self._hosted_sessions(node)
        # A session created at or after the deadline is here only when input came out of
        # event-time order (a sessions partition read ahead of the node's liveness partition);
        # in order, its creation would be held and applied after the crash, and it survives.
        sessions = [s for s in hosted if s.created_at < incident.deadline]
        survivors = [s.session_id for s in hosted if s.created_at >= incident.deadline]
        suggested = self._suggest(node.id)
        head = bodies.node_crashed(
            node,
            incident,
            [s.session_id for s in sessions],
            [rid for s in sessions for rid in s.recordings],
            [s.session_id for s in sessions if s.broadcast is not None],
        )
        iid = incident.incident_id
        out: list[Output] = [
            Emit("cdr", node.id, head, node.id, iid),
            Emit(
                "nodes",
                node.id,
                bodies.incident_closed(incident, "crashed", incident.deadline),
                node.id,
                iid,
            ),
        ]
        for session in sessions:
            out += session_cascade(session, incident, suggested)
            self.store.put_session(_tombstone(session, incident.deadline))
        node.sessions = survivors
        node.incident, node.crash, node.life = None, incident, "crashed"
        r = self.settings.reconnection_timeout_s
        if r >= 0:
            node.removal_at = incident.disconnected_at + max(r * 1000, self.settings.grace_ms)
            if node.removal_at <= incident.deadline:
                out += self._remove(node, node.removal_at)
        return out

    def _remove(self, node: NodeState, at: int) -> list[Output]:
        """R6: terminating, then terminated, stamped at the removal instant."""
        iid = node.crash.incident_id if node.crash else None
        old = node.last_status or "running"
        out: list[Output] = [
            Emit(
                "cdr",
                node.id,
                bodies.node_status_changed(node, at, old, "terminating"),
                node.id,
                iid,
            ),
            Emit(
                "cdr",
                node.id,
                bodies.node_status_changed(node, at, "terminating", "terminated"),
                node.id,
                iid,
            ),
            Emit("nodes", node.id, bodies.node_removed(node.id, at), node.id, iid),
        ]
        node.life, node.last_status, node.removal_at, node.crash = (
            "removed",
            "terminated",
            None,
            None,
        )
        return out

    def _hosted_sessions(self, node: NodeState) -> list[SessionState]:
        found = [self.store.get_session(node.id, sid) for sid in node.sessions]
        sessions = [s for s in found if s is not None and s.crashed_at is None]
        return sorted(sessions, key=lambda s: (s.created_at, s.session_id))

    def _suggest(self, crashed: str) -> str | None:
        """CONTRACT §9: the running node with the fewest sessions, ties by id; best effort."""
        loads = [x for x in self.store.loads() if x.running and x.node_id != crashed]
        if not loads:
            return None
        return min(loads, key=lambda x: (x.sessions, x.node_id)).node_id

    def _release(self, node: NodeState) -> list[Output]:
        held, node.held = node.held, []
        out: list[Output] = []
        for row in held:
            item = Input.from_row(row)
            if item.kind == "liveness":
                out += self._liveness(node, item)
            else:
                out += self._session(node, item, released=True)
        return out

    # -- sessions (§4, §6 staleAfterCrash) -------------------------------------------------

    def _session(self, node: NodeState, item: Input, *, released: bool = False) -> list[Output]:
        """``released``: the item was held and is applied now, possibly after later records
        of its session, so its offset says nothing about whether it was applied (it was not)."""
        sid = str(item.payload["sessionId"])
        session = self.store.get_session(node.id, sid)
        if session is not None and session.crashed_at is None and sid not in node.sessions:
            # A row the node row does not vouch for: written (or left, when its removal was
            # not) just before a kill -9 cut a flush short; the replay rebuilds what it held.
            session = None
        if not released and session is not None and item.source_offset <= session.source_offset:
            return []  # a replay of what was applied before a restart
        if self._must_hold(node, item):
            if not any(_same_source(row, item) for row in node.held):
                node.held.append(item.to_row())
            return []
        try:
            if item.event == "sessionCreated":
                return self._create(node, session, item)
            return self._update(node, session, item)
        except RejectedInput as e:
            return [Reject(item, e.code, e.detail)]

    def _create(self, node: NodeState, old: SessionState | None, item: Input) -> list[Output]:
        sid, t = str(item.payload["sessionId"]), item.timestamp
        if old is not None and old.crashed_at is None:
            if old.created_at == t:
                raise Duplicate(f"session {sid} was already created at {t}")
            raise SessionAlreadyOpen(f"session {sid} is open since {old.created_at}")
        if old is not None and old.crashed_at is not None and t < old.crashed_at:
            raise StaleAfterCrash(f"session {sid} was closed by a crash at {old.crashed_at}")
        usid = str(item.payload.get("uniqueSessionId") or unique_session_id(sid, t))
        applied = max(item.source_offset, old.source_offset if old is not None else -1)
        session = SessionState(sid, usid, t, node.id, source_offset=applied)
        body = cdr_copy(item.payload, usid)
        session.recent_ids.append(ce_id(item.event, body))
        self.store.put_session(session)
        if sid not in node.sessions:
            node.sessions.append(sid)
        return [Emit("cdr", sid, body, node.id)]

    def _update(self, node: NodeState, session: SessionState | None, item: Input) -> list[Output]:
        sid = str(item.payload["sessionId"])
        if session is None:
            raise UnknownSession(f"session {sid} is not open on {node.id}")
        if session.crashed_at is not None:
            raise StaleAfterCrash(f"session {sid} was closed by a crash at {session.crashed_at}")
        body = cdr_copy(item.payload, session.unique_session_id)
        event_id = ce_id(item.event, body)
        if event_id in session.recent_ids:
            raise Duplicate(f"{item.event} {event_id} was already applied")
        apply_to_session(session, body)
        session.recent_ids = [*session.recent_ids, event_id][-_RECENT_IDS:]
        session.source_offset = max(session.source_offset, item.source_offset)
        if item.event == "sessionDestroyed":
            self.store.delete_session(node.id, sid)
            node.sessions = [s for s in node.sessions if s != sid]
        else:
            self.store.put_session(session)
        return [Emit("cdr", sid, body, node.id)]

    # -- state ------------------------------------------------------------------------------

    def _node(self, node_id: str) -> NodeState:
        return self.store.get_node(node_id) or NodeState(node_id)

    def _save(self, node: NodeState, out: list[Output]) -> list[Output]:
        self.store.put_node(node)
        self.store.set_timer(node.id, self.due(node))
        return out


def _tombstone(session: SessionState, at: int) -> SessionState:
    """What remains of a crashed session: enough to dead-letter late input (staleAfterCrash)."""
    return SessionState(
        session.session_id,
        session.unique_session_id,
        session.created_at,
        session.node,
        crashed_at=at,
        source_offset=session.source_offset,
    )


def _same_source(row: dict[str, object], item: Input) -> bool:
    """The same input record: a liveness and a sessions record may share partition and offset."""
    return (
        row["kind"] == item.kind
        and row["source_partition"] == item.source_partition
        and row["source_offset"] == item.source_offset
    )
