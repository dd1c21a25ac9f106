"""Workloads: the records the detector writes for a busy cluster, made by the real rule engine
and the detector's own output builder (so headers and ids are what production writes)."""

from __future__ import annotations

from collections.abc import Iterator

from benchmarks.infra import Record
from services.config import DetectorSettings
from services.core.rules import Emit, InMemoryRulesStore, Input, NodeEngine, RuleSettings
from services.detector.output import OutputBuilder

__all__ = ["cdr_record_stream", "cdr_records"]

T0 = 1_790_000_000_000


def _sessions(n: int, participants: int, t0: int) -> Iterator[tuple[str, str, dict[str, object]]]:
    """(kind, node, payload) input for ``n`` sessions over 10 nodes, each with people who join,
    publish and leave; every session ends normally."""
    nodes = [f"media_b{i:02d}" for i in range(10)]
    for i, node in enumerate(nodes):
        yield "liveness", node, {"event": "nodeConnected", "timestamp": t0 + i, "id": node}
    t = t0 + 100
    for s in range(n):
        node, sid = nodes[s % len(nodes)], f"ses_{s:07d}"
        yield (
            "session",
            node,
            {"event": "sessionCreated", "timestamp": t, "sessionId": sid, "mediaNodeId": node},
        )
        people = [f"con_{s:07d}_{p}" for p in range(participants)]
        for p, cid in enumerate(people):
            yield (
                "session",
                node,
                {
                    "event": "participantJoined",
                    "timestamp": t + 1 + p,
                    "sessionId": sid,
                    "connectionId": cid,
                    "location": "Berlin, Germany",
                    "ip": "10.1.2.3",
                    "platform": "Chrome 130 on Linux",
                    "clientData": f"user-{p}",
                    "serverData": "",
                },
            )
        for p, cid in enumerate(people):
            yield (
                "session",
                node,
                {
                    "event": "participantLeft",
                    "timestamp": t + 60_000 + p,
                    "sessionId": sid,
                    "connectionId": cid,
                    "location": "Berlin, Germany",
                    "ip": "10.1.2.3",
                    "platform": "Chrome 130 on Linux",
                    "clientData": f"user-{p}",
                    "serverData": "",
                    "startTime": t + 1 + p,
                    "duration": 59,
                    "reason": "disconnect",
                },
            )
        yield (
            "session",
            node,
            {
                "event": "sessionDestroyed",
                "timestamp": t + 61_000,
                "sessionId": sid,
                "startTime": t,
                "duration": 61,
                "reason": "lastParticipantLeft",
            },
        )
        t += 5


def _engine_emits(sessions: int, participants: int) -> list[Emit]:
    engine = NodeEngine(InMemoryRulesStore(), RuleSettings(grace_ms=3000))
    found: list[Emit] = []
    for offset, (kind, node, payload) in enumerate(_sessions(sessions, participants, T0)):
        item = Input(kind, payload, 0, offset)  # type: ignore[arg-type]
        emits = (
            engine.on_liveness(node, item) if kind == "liveness" else engine.on_session(node, item)
        )
        found += [e for e in emits if isinstance(e, Emit) and e.stream == "cdr"]
    return found


def cdr_records(settings: DetectorSettings, sessions: int, participants: int = 3) -> list[Record]:
    """The CDR records (topic ``settings.topic_cdr``) of ``sessions`` sessions:
    ``sessions * (2 + 2 * participants)`` records.

    The rule engine writes the records of 10 sessions; the others are those with their ids and
    times shifted (running the engine for a million events would take minutes).
    """
    return list(cdr_record_stream(settings, sessions, participants))


def cdr_record_stream(
    settings: DetectorSettings, sessions: int, participants: int = 3
) -> Iterator[Record]:
    """``cdr_records`` one at a time, for workloads too large to hold (B4's million events)."""
    builder = OutputBuilder(settings)
    template = [e for e in _engine_emits(10, participants) if "sessionId" in e.body]
    per_session: dict[str, list[Emit]] = {}
    for e in template:
        per_session.setdefault(str(e.body["sessionId"]), []).append(e)
    model = per_session["ses_0000000"]
    for s in range(sessions):
        sid, shift = f"ses_{s:07d}", 5 * s
        for e in model:
            body = {k: _renamed(v, sid, s, shift, k) for k, v in e.body.items()}
            o = builder.emit(Emit(e.stream, sid, body, e.media_node_id, e.incident_id))
            yield (o.topic, o.key, o.value, list(o.headers), o.timestamp_ms)


def _renamed(value: object, sid: str, s: int, shift: int, key: str) -> object:
    if key in ("timestamp", "startTime") and isinstance(value, int):
        return value + shift
    if isinstance(value, str):
        unique = value.replace(f"ses_0000000_{T0 + 100}", f"{sid}_{T0 + 100 + shift}")
        return unique.replace("ses_0000000", sid).replace("con_0000000_", f"con_{s:07d}_")
    return value
