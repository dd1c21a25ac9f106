"""Properties of the node engine over random interleavings (CONTRACT §5, §6, §9).

A script is a random interleaving, over one to three nodes, of liveness events (connect,
disconnect, heartbeat, planned status changes), session events (create, join, publish,
subscribe, unpublish, leave, destroy, record, broadcast, signal) and ``advance`` calls with
non-decreasing watermarks that respect their meaning (everything stamped before the watermark
has been fed), ending with an advance far in the future.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.codec import ce_id
from services.core.rules import InMemoryRulesStore, Input, NodeEngine, Output, RuleSettings
from tests.support.rules_builders import (
    GRACE_MS,
    T0,
    Payload,
    broadcast_started,
    codes,
    connection_destroyed,
    emits,
    inbound_created,
    node_connected,
    node_disconnected,
    node_heartbeat,
    node_status_changed,
    outbound_created,
    participant_joined,
    participant_left,
    recording_started,
    session_created,
    session_destroyed,
    signal_sent,
    validate,
)

NODES = ("media_n0", "media_n1", "media_n2")
SESSION_IDS = ("ses_A", "ses_B", "ses_C", "ses_D")
SESSIONS_PARTITION = 10
FAR = T0 + 100_000_000
COPY_EXTRAS = ("uniqueSessionId", "participantId")
SESSION_OPS = (  # weighted: open media connections make the cascades interesting
    "join",
    "create",
    "join",
    "publish",
    "publish",
    "publish",
    "subscribe",
    "subscribe",
    "subscribe",
    "subscribe",
    "unpublish",
    "leave",
    "destroy",
    "record",
    "broadcast",
    "signal",
)

PROPERTIES = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Step:
    kind: Literal["liveness", "session", "advance"]
    node: str
    payload: Payload | None = None
    partition: int = 0
    offset: int = 0
    watermark: int = 0


@dataclass(frozen=True)
class Script:
    settings: RuleSettings
    nodes: tuple[str, ...]
    steps: tuple[Step, ...]


# -- generating scripts -------------------------------------------------------------------------


@dataclass
class ModelSession:
    """What the session's (OpenVidu) server believes; the engine may know better after a crash."""

    node: str
    created: int
    last: int = 0
    participants: dict[str, int] = field(default_factory=dict)
    outbound: dict[str, Payload] = field(default_factory=dict)
    inbound: dict[tuple[str, str], Payload] = field(default_factory=dict)
    recording: bool = False
    broadcast: bool = False


class ScriptBuilder:
    def __init__(self, draw: st.DrawFn, nodes: tuple[str, ...]) -> None:
        self._draw = draw
        self.nodes = nodes
        self.steps: list[Step] = []
        self.sessions: dict[str, ModelSession] = {}
        self.incarnations: set[tuple[str, int]] = set()  # (sessionId, createdAt) ever created
        self.offsets = itertools.count(1)
        self.people = itertools.count(1)
        self.clock = T0
        self.watermark = T0
        self.down: set[str] = set()

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self._draw(strategy)

    def choose(self, options: Sequence[Any]) -> Any:
        """One of ``options`` (shrinking towards the first); cheaper than a new sampled_from."""
        return options[self._draw(st.integers(0, len(options) - 1))]

    def live(self, payload: Payload) -> None:
        node = str(payload["id"])
        partition = self.nodes.index(node)
        self.steps.append(Step("liveness", node, payload, partition, next(self.offsets)))

    def send(self, node: str, payloads: list[Payload]) -> None:
        """Session records, keyed by session id: two sessions partitions."""
        for payload in payloads:
            partition = SESSIONS_PARTITION + SESSION_IDS.index(payload["sessionId"]) % 2
            self.steps.append(Step("session", node, payload, partition, next(self.offsets)))

    def stamp(self) -> int:
        """Session events are sometimes stamped ahead of the clock (a faster partition)."""
        return self.clock + self.choose([0, 0, 0, 1, 1_500, 3_500])

    # liveness

    def liveness_op(self) -> None:
        """A node that is down comes back; one that is up beats, changes status or drops (and
        then perhaps comes back at once: a blip, or just too late)."""
        node = self.choose(self.nodes)
        if node in self.down:
            self.down.discard(node)
            self.live(node_connected(node, self.clock))
            return
        what = self.choose(["heartbeat", "disconnect", "heartbeat", "disconnect", "status"])
        if what == "heartbeat":
            self.live(node_heartbeat(node, self.clock))
        elif what == "status":
            new = self.choose(["running", "terminating", "terminated"])
            self.live(node_status_changed(node, self.clock, "running", new))
        else:
            self.live(node_disconnected(node, self.clock))
            back = self.choose([None, 1, 1_500, GRACE_MS - 1, GRACE_MS, GRACE_MS + 1])
            if back is None or back >= GRACE_MS:  # its sessions die with it
                self.sessions = {k: v for k, v in self.sessions.items() if v.node != node}
            if back is None:
                self.down.add(node)
            else:
                self.clock += back
                self.live(node_connected(node, self.clock))

    # sessions

    def create(self) -> None:
        sid = self.choose(SESSION_IDS)
        node = self.choose([n for n in self.nodes if n not in self.down] or self.nodes)
        ts = self.stamp()
        while (sid, ts) in self.incarnations:
            # Not OpenVidu's input: a uniqueSessionId (sessionId_createdAt) names one
            # incarnation, and two nodes cannot both have created it. (Found by hypothesis,
            # seed 332848419692902583532928342609649347729: a node the model took for dead
            # came back in time and kept its ses_D, created again on another node in the same
            # millisecond; the CDR told the two apart by node only, and a crash closed "both".)
            ts += 1
        self.incarnations.add((sid, ts))
        self.sessions[sid] = ModelSession(node, ts, ts)
        self.send(node, [session_created(sid, ts, node)])

    def pick_session(self) -> tuple[str, ModelSession] | None:
        if not self.sessions:
            return None
        sid = self.choose(sorted(self.sessions))
        return sid, self.sessions[sid]

    def closing(self, sid: str, s: ModelSession, cid: str, ts: int) -> list[Payload]:
        """What OpenVidu sends when ``cid`` leaves: its media connections, then participantLeft."""
        out: list[Payload] = []
        for key in [k for k in s.inbound if cid in k]:
            out.append(connection_destroyed(s.inbound.pop(key), ts, "unsubscribe"))
        if cid in s.outbound:
            out.append(connection_destroyed(s.outbound.pop(cid), ts, "disconnect"))
        out.append(participant_left(sid, cid, ts, s.participants.pop(cid)))
        return out

    def session_op(self) -> None:
        what = self.choose(SESSION_OPS)
        picked = self.pick_session()
        if what == "create" or picked is None:
            self.create()
            return
        sid, s = picked
        ts = s.last = max(self.stamp(), s.last)  # one session's events in time order
        people = sorted(s.participants)
        out: list[Payload] = []
        if what == "join" or not people:
            cid = f"con_{next(self.people):04d}"
            s.participants[cid] = ts
            out.append(participant_joined(sid, cid, ts))
        elif what == "publish":
            cid = self.choose(people)
            if cid not in s.outbound:
                s.outbound[cid] = outbound_created(sid, cid, ts, video=self.draw(st.booleans()))
                out.append(s.outbound[cid])
        elif what == "subscribe":
            receiver = self.choose(people)
            senders = [c for c in sorted(s.outbound) if c != receiver]
            if senders:
                sender = self.choose(senders)
                if (receiver, sender) not in s.inbound:
                    s.inbound[(receiver, sender)] = inbound_created(sid, receiver, sender, ts)
                    out.append(s.inbound[(receiver, sender)])
        elif what == "unpublish" and s.outbound:
            cid = self.choose(sorted(s.outbound))
            for key in [k for k in s.inbound if k[1] == cid]:
                out.append(connection_destroyed(s.inbound.pop(key), ts, "unpublish"))
            out.append(connection_destroyed(s.outbound.pop(cid), ts, "unpublish"))
        elif what == "leave":
            out += self.closing(sid, s, self.choose(people), ts)
        elif what == "destroy":
            for cid in people:
                out += self.closing(sid, s, cid, ts)
            out.append(session_destroyed(sid, ts, s.created))
            del self.sessions[sid]
        elif what == "record" and not s.recording:
            s.recording = True
            out.append(recording_started(sid, ts))
        elif what == "broadcast" and not s.broadcast:
            s.broadcast = True
            out.append(broadcast_started(sid, ts))
        elif what == "signal":
            out.append(signal_sent(sid, ts, self.choose(people), people))
        self.send(s.node, out)

    # event-time progress

    def advance_op(self) -> None:
        """A watermark no later than the clock: nothing stamped before it is still to come."""
        self.watermark = self.draw(st.integers(self.watermark, self.clock))
        for node in self.nodes:
            self.steps.append(Step("advance", node, watermark=self.watermark))

    def build(self) -> list[Step]:
        for node in self.nodes:
            self.live(node_connected(node, self.clock))
        for _ in range(self.draw(st.integers(1, 60))):
            self.clock += self.choose([1, 2, 400, 1_000, 2_500, 3_100, 9_000])
            op = self.choose(["session", "liveness", "session", "session", "advance"])
            {"liveness": self.liveness_op, "session": self.session_op, "advance": self.advance_op}[
                op
            ]()
        for node in self.nodes:
            self.steps.append(Step("advance", node, watermark=FAR))
        return self.steps


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    nodes = NODES[: draw(st.integers(1, 3))]
    rules = RuleSettings(
        grace_ms=GRACE_MS,
        heartbeat_timeout_ms=draw(st.sampled_from([0, 2_000])),
        reconnection_timeout_s=draw(st.sampled_from([-1, 0, 5])),
    )
    return Script(rules, nodes, tuple(ScriptBuilder(draw, nodes).build()))


# -- running scripts ----------------------------------------------------------------------------


def feed(engine: NodeEngine, steps: tuple[Step, ...]) -> list[Output]:
    out: list[Output] = []
    for step in steps:
        if step.kind == "advance":
            out += engine.advance(step.node, step.watermark)
            continue
        assert step.payload is not None
        item = Input(step.kind, step.payload, step.partition, step.offset)
        if step.kind == "liveness":
            out += engine.on_liveness(step.node, item)
        else:
            out += engine.on_session(step.node, item)
    return out


def run(script: Script) -> tuple[NodeEngine, list[Output]]:
    engine = NodeEngine(InMemoryRulesStore(), script.settings)
    return engine, feed(engine, script.steps)


def is_copy(body: dict[str, Any], inputs: list[Payload]) -> bool:
    """``body`` is the CDR copy of one of ``inputs`` (CONTRACT §3, §4)."""
    bare = {k: v for k, v in body.items() if k not in COPY_EXTRAS}
    return any(
        bare == {k: v for k, v in p.items() if k not in ("mediaNodeId", *COPY_EXTRAS)}
        for p in inputs
    )


# -- properties of one run ----------------------------------------------------------------------


def check_one_crash_per_incident(out: list[Output]) -> None:
    """R3: exactly one nodeCrashed per crashed incident, at D = d + grace; one outcome each."""
    crashes = [e for e in emits(out, "cdr") if e.body["event"] == "nodeCrashed"]
    for e in crashes:
        assert e.incident_id == f"{e.body['id']}_{e.body['timeOfDisconnection']}"
        assert e.body["timestamp"] == e.body["timeOfDisconnection"] + GRACE_MS
    assert max(Counter(e.incident_id for e in crashes).values(), default=0) <= 1
    outcomes: dict[str, list[str]] = defaultdict(list)
    for e in emits(out, "nodes"):
        if e.body["event"] == "incidentClosed":
            outcomes[e.body["incidentId"]].append(e.body["outcome"])
    assert all(len(v) == 1 for v in outcomes.values()), outcomes
    assert {e.incident_id for e in crashes} == {i for i, v in outcomes.items() if v == ["crashed"]}


def check_blips_write_only_copies(out: list[Output], inputs: list[Payload]) -> None:
    """R2, R5, R6: every CDR record is an input's copy, or belongs to a crash written before it
    (its cascade, its removal, the recovery of its node); a blip's incident id is on no record
    but its node facts."""
    crashed: set[str | None] = set()
    down: set[str] = set()  # nodes crashed and neither recovered nor removed
    blips = {
        e.incident_id
        for e in emits(out, "nodes")
        if e.body["event"] == "incidentClosed" and e.body["outcome"] == "reconnected"
    }
    for e in emits(out):
        assert e.incident_id not in blips or e.stream == "nodes", e.body
        if e.stream != "cdr":
            continue
        event = e.body["event"]
        if event == "nodeCrashed":
            crashed.add(e.incident_id)
            down.add(e.key)
        elif event == "nodeRecovered":
            assert e.key in down
            down.discard(e.key)
        elif e.incident_id is not None:
            assert e.incident_id in crashed, e.body
            if event == "mediaNodeStatusChanged":
                down.discard(e.key)
            else:
                assert e.body["reason"] == "nodeCrashed"
        else:
            assert is_copy(e.body, inputs), e.body
            assert e.body.get("reason") != "nodeCrashed"


def check_connections_close_once(out: list[Output]) -> None:
    """§6: a media connection or participant is closed at most once after it opened, and a
    session closed by a crash is left with none open (each was closed exactly once)."""
    connections: dict[str, set[tuple[str, str]]] = defaultdict(set)
    participants: dict[str, set[str]] = defaultdict(set)
    for e in emits(out, "cdr"):
        body, event = e.body, e.body["event"]
        usid = body.get("uniqueSessionId", "")
        if event == "webrtcConnectionCreated":
            connections[usid].add((body["connectionId"], body["streamId"]))
        elif event == "webrtcConnectionDestroyed":
            key = (body["connectionId"], body["streamId"])
            assert key in connections[usid], f"{key} destroyed but not open"
            connections[usid].remove(key)
        elif event == "participantJoined":
            participants[usid].add(body["connectionId"])
        elif event == "participantLeft":
            cid = body["connectionId"]
            assert cid in participants[usid], f"{cid} left but is not in {usid}"
            participants[usid].remove(cid)
            # its own connections and those receiving its stream (str_…_<cid>) go with it
            owned = {k for k in connections[usid] if k[0] == cid or k[1].endswith(f"_{cid}")}
            if body["reason"] == "nodeCrashed":  # the cascade destroyed them just before
                assert owned == set(), owned
            connections[usid] -= owned
        elif event == "sessionDestroyed" and body["reason"] == "nodeCrashed":
            assert connections.pop(usid, set()) == set()
            assert participants.pop(usid, set()) == set()


def check_crashed_sessions_destroyed_once(out: list[Output]) -> None:
    """§6: every session listed in nodeCrashed gets exactly one sessionDestroyed of that crash."""
    cdr = emits(out, "cdr")
    for crash in [e for e in cdr if e.body["event"] == "nodeCrashed"]:
        destroyed = [
            e.body["sessionId"]
            for e in cdr
            if e.body["event"] == "sessionDestroyed" and e.incident_id == crash.incident_id
        ]
        assert sorted(destroyed) == crash.body["sessionIds"]


def check_records_validate(out: list[Output]) -> None:
    for e in emits(out):
        validate(e)
    for notice in emits(out, "notifications"):
        assert notice.body["suggestedMediaNodeId"] != notice.media_node_id


@PROPERTIES
@given(scripts())
def test_crash_rules_hold_in_any_interleaving(script: Script) -> None:
    _, out = run(script)
    check_one_crash_per_incident(out)
    check_blips_write_only_copies(out, [s.payload for s in script.steps if s.payload])
    check_connections_close_once(out)
    check_crashed_sessions_destroyed_once(out)
    check_records_validate(out)


# -- properties across runs ---------------------------------------------------------------------


@PROPERTIES
@given(scripts())
def test_identical_input_gives_identical_output_and_a_replay_no_new_record(
    script: Script,
) -> None:
    """R9: the same input gives the same records; re-processing the same records (same
    partitions and offsets) into the same store writes nothing and decides nothing again."""
    engine, first = run(script)
    assert run(script)[1] == first
    assert feed(engine, script.steps) == []
    assert all(engine.advance(node, FAR) == [] for node in script.nodes)


def cdr_by_key(out: list[Output]) -> dict[tuple[str, str | None], list[str]]:
    """The CDR ids per (key, node): records of one key from different nodes may interleave
    differently (consumers link a crash's records by incident id, CONTRACT §2)."""
    by_key: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for e in emits(out, "cdr"):
        by_key[(e.key, e.media_node_id)].append(ce_id(str(e.body["event"]), e.body))
    return dict(by_key)


@PROPERTIES
@given(scripts())
def test_the_cdr_does_not_depend_on_when_watermarks_advance(script: Script) -> None:
    """R8: the CDR is a pure function of the input log, not of when decisions were taken."""
    late = Script(
        script.settings,
        script.nodes,
        tuple(s for s in script.steps if s.kind != "advance" or s.watermark == FAR),
    )
    assert cdr_by_key(run(script)[1]) == cdr_by_key(run(late)[1])


def test_scripts_reach_crashes_blips_recoveries_and_full_cascades() -> None:
    """The generator reaches the interesting cases, else the properties above prove little."""
    seen: Counter[str] = Counter()

    @settings(PROPERTIES, max_examples=100, derandomize=True)
    @given(scripts())
    def collect(script: Script) -> None:
        _, out = run(script)
        for e in emits(out):
            seen[str(e.body.get("outcome") or e.body["event"])] += 1
            if e.body.get("reason") == "nodeCrashed":
                seen[f"cascade:{e.body['event']}"] += 1
        seen["staleAfterCrash"] += codes(out).count("staleAfterCrash")

    collect()
    for wanted in (
        "nodeCrashed",
        "reconnected",
        "nodeRecovered",
        "nodeRemoved",
        "cascade:webrtcConnectionDestroyed",
        "cascade:participantLeft",
        "cascade:recordingStatusChanged",
        "cascade:broadcastStopped",
        "sessionDisconnected",
        "staleAfterCrash",
    ):
        assert seen[wanted] > 0, (wanted, seen)


def feed_liveness_behind(engine: NodeEngine, steps: tuple[Step, ...], lag: int) -> list[Output]:
    """The same input with the liveness read ``lag`` records behind the sessions (as when its
    partition is rewound or lags): each session event is given how far the liveness is known
    (the earliest liveness event not fed yet); no intermediate watermarks."""
    liveness = [s for s in steps if s.kind == "liveness"]
    order: list[Step] = []
    fed = 0
    for step in steps:
        if step.kind == "session":
            order.append(step)
        elif step.kind == "liveness":
            while fed < liveness.index(step) - lag:
                order.append(liveness[fed])
                fed += 1
    order += liveness[fed:]
    out: list[Output] = []
    pending = list(liveness)
    for step in order:
        assert step.payload is not None
        item = Input(step.kind, step.payload, step.partition, step.offset)
        if step.kind == "liveness":
            pending.remove(step)
            out += engine.on_liveness(step.node, item)
        else:
            known = min((int(s.payload["timestamp"]) for s in pending if s.payload), default=FAR)
            out += engine.on_session(step.node, item, known)
    for node in sorted({s.node for s in steps}):
        out += engine.advance(node, FAR)
    return out


@PROPERTIES
@given(scripts(), st.integers(1, 12))
def test_the_cdr_does_not_depend_on_how_far_behind_the_liveness_is_read(
    script: Script, lag: int
) -> None:
    """R8 across partitions: session input may reach the engine before liveness stamped
    earlier (another partition, read behind). Fed with how far the liveness is known, the
    outcome is the same however far behind it is read. (The reference is the script's own
    order, liveness known as it is fed: scripts interleave partitions freely, even against
    their timestamps, so plain event-time order is not defined for them; the unit tests in
    test_rules_cascade.py check event-time order on the cases that matter.)"""
    engine = NodeEngine(InMemoryRulesStore(), script.settings)
    reference = feed_liveness_behind(engine, script.steps, 0)
    engine = NodeEngine(InMemoryRulesStore(), script.settings)
    behind = feed_liveness_behind(engine, script.steps, lag)
    assert cdr_by_key(behind) == cdr_by_key(reference)
    assert sorted(codes(behind)) == sorted(codes(reference))
