"""What a fault must not break (issue 8), checked on the real topics, SQL and webhook receiver.

The reference is the rule engine itself. CONTRACT R8 makes the detector's output a pure function
of the input log, so the input topics as they stand after a run, replayed in one process through
the pure ``NodeEngine`` (the detector's path without Kafka: validate, route, apply in event-time
order, advance the watermark), say exactly which records the detector must have written: every
CDR copy, every cascade record, node fact and client notice, every dead letter. Whatever a fault
did, the topics must hold exactly those records — repeats allowed, always with the same ``ce_id``
— and nothing else. The other checks follow from the CDR: SQL equals a rebuild from the topics,
and every CDR record reached the webhook receiver, in order per key.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from services.core import codec
from services.core.errors import RejectedInput, UnknownSession
from services.core.rules import Emit, InMemoryRulesStore, Input, NodeEngine, Output, RuleSettings
from services.core.validation import InputKind, ValidInput, validate_input
from services.ops.sql import wait_caught_up
from services.ops.tail import TailedRecord, collect, read_topic
from services.projector.rebuild import rebuild
from services.store import make_engine, models
from services.store.projection import PROJECTOR, ProjectionStore
from tests.support.databases import fresh_database_url, migrated_engine, snapshot
from tests.support.receiver import Receiver, first_deliveries
from tests.support.services import Deployment

__all__ = ["Check", "Expected", "InvariantReport", "check_invariants", "expected_outputs"]

STREAMS = ("cdr", "nodes", "notifications")
#: The node facts the rule engine writes (CONTRACT §8); other detector parts may add their own
#: (a cluster-wide view of several nodes), which this reference does not model.
ENGINE_FACTS = frozenset({"nodeDescribed", "incidentOpened", "incidentClosed", "nodeRemoved"})
#: (source topic, partition, offset) of an input record
Position = tuple[str, int, int]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class InvariantReport:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, int | float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, problems: Sequence[str], detail: str) -> None:
        shown = "; ".join(problems[:8]) + (
            f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""
        )
        self.checks.append(Check(name, not problems, shown if problems else detail))

    def text(self) -> str:
        lines = [f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        lines.append("  " + "  ".join(f"{k}={v}" for k, v in self.figures.items()))
        return "\n".join(lines)


@dataclass
class Expected:
    """What the detector must have written for an input log."""

    inputs: int = 0
    #: stream → ce_id → (record key, event name)
    outputs: dict[str, dict[str, tuple[str, str]]] = field(
        default_factory=lambda: {s: {} for s in STREAMS}
    )
    dead: dict[Position, str] = field(default_factory=dict)  # input position → error code
    crashes: set[tuple[str, int]] = field(default_factory=set)  # (node, timeOfDisconnection)


def _ce_id(record: TailedRecord) -> str:
    return dict(record.headers).get("ce_id", b"").decode()


def _event(record: TailedRecord) -> str | None:
    try:
        body = json.loads(record.value or b"null")
    except ValueError:
        return None
    return body.get("event") if isinstance(body, dict) else None


def _dead_position(record: TailedRecord) -> Position:
    h = {k: v.decode() for k, v in record.headers}
    return (h["source_topic"], int(h["source_partition"]), int(h["source_offset"]))


def _read(bootstrap: str, topic: str) -> list[TailedRecord]:
    async def read() -> list[TailedRecord]:
        return [r async for r in read_topic(bootstrap, topic)]

    return asyncio.run(read())


# -- the reference --------------------------------------------------------------------------


def expected_outputs(d: Deployment, settings: RuleSettings, until_ms: int) -> Expected:
    """Replay the deployment's input topics through the pure rule engine, watermark up to
    ``until_ms`` at the end."""
    kinds: dict[str, InputKind] = {d.topic("liveness"): "liveness", d.topic("sessions"): "session"}
    records = [(topic, r) for topic in kinds for r in _read(d.bootstrap, topic)]
    # Event-time order; within a partition the offsets follow it (the producers keep it).
    records.sort(key=lambda tr: (tr[1].timestamp_ms, tr[0], tr[1].partition, tr[1].offset))
    expected = Expected(inputs=len(records))
    store = InMemoryRulesStore()
    engine = NodeEngine(store, settings)
    routes: dict[str, str] = {}

    def take(outputs: Iterable[Output]) -> None:
        for o in outputs:
            if isinstance(o, Emit):
                event = str(o.body["event"])
                expected.outputs[o.stream][codec.ce_id(event, o.body)] = (o.key, event)
                if event == "nodeCrashed" and o.stream == "cdr":
                    expected.crashes.add((str(o.body["id"]), int(o.body["timeOfDisconnection"])))
            else:
                topic = next(t for t, k in kinds.items() if k == o.input.kind)
                expected.dead[(topic, o.input.source_partition, o.input.source_offset)] = o.code

    def advance(watermark: int) -> None:
        for node, due in sorted(store.timers.items()):
            if due <= watermark:
                take(engine.advance(node, watermark))

    for topic, r in records:
        advance(r.timestamp_ms - 1)
        kind = kinds[topic]
        try:
            valid = validate_input(kind, r.key, r.value)
            node = valid.key
            if kind == "session":
                node = _route(valid, routes)
        except RejectedInput as e:
            expected.dead[(topic, r.partition, r.offset)] = e.code
            continue
        item = Input(kind, valid.payload, r.partition, r.offset)
        take(
            engine.on_liveness(node, item) if kind == "liveness" else engine.on_session(node, item)
        )
    advance(until_ms)
    return expected


def _route(valid: ValidInput, routes: dict[str, str]) -> str:
    """The session router's decision (CONTRACT §4, ARCHITECTURE.md): ``sessionCreated`` binds the
    session to its node, every other event follows the binding, ``sessionDestroyed`` ends it.
    Written out here rather than imported, so the reference does not follow the detector's
    implementation."""
    if valid.event == "sessionCreated":
        routes[valid.key] = str(valid.payload["mediaNodeId"])
        return routes[valid.key]
    node = routes.get(valid.key)
    if node is None:
        raise UnknownSession(f"no sessionCreated seen for session {valid.key!r}")
    if valid.event == "sessionDestroyed":
        del routes[valid.key]
    return node


# -- waiting for the system to converge -------------------------------------------------------


class _Wrong(Exception):
    """A record the input log does not call for: waiting longer cannot make the run pass."""


def _await_all(
    bootstrap: str,
    topic: str,
    wanted: set[Any],
    identity: Callable[[TailedRecord], Any],
    timeout_s: float,
    judged: Callable[[TailedRecord], bool] = lambda _r: True,
) -> tuple[set[Any], bool]:
    """Read ``topic`` (long polls) until every wanted identity was seen; returns what is still
    missing when ``timeout_s`` runs out (empty on success) — or as soon as a ``judged`` record
    that is not wanted shows up (the checks that follow name it) — and whether one did."""
    missing, everything = set(wanted), set(wanted)

    def first_sight(record: TailedRecord) -> bool:
        key = identity(record)
        if key in missing:
            missing.discard(key)
            return True
        if key not in everything and judged(record):
            raise _Wrong(key)
        return False

    if not missing:
        return missing, False
    try:
        asyncio.run(
            collect(
                bootstrap, topic, count=len(missing), timeout_s=timeout_s, predicate=first_sight
            )
        )
    except TimeoutError:
        pass
    except _Wrong:
        return missing, True
    return missing, False


# -- the checks -------------------------------------------------------------------------------


def check_invariants(
    d: Deployment,
    *,
    database_url: str,
    postgres_url: str | None,
    receiver: Receiver | None,
    settings: RuleSettings,
    simulated_crashes: int | None,
    timeout_s: float = 180,
    tmp_dir: Any = None,
) -> InvariantReport:
    """Wait (up to ``timeout_s``) for the pipeline to deliver what the input log calls for,
    then check every invariant; never raises for a broken one, it is in the report."""
    report = InvariantReport()
    started = time.monotonic()
    deadline = started + timeout_s
    expected = expected_outputs(d, settings, int(time.time() * 1000) - 200)
    _check_topics(d, expected, report, deadline)
    _check_crashes(d, expected, report, simulated_crashes)
    _check_sql(d, expected, report, database_url, postgres_url, tmp_dir, deadline)
    if receiver is not None:
        _check_webhooks(d, receiver, report, deadline)
    report.figures["converged_s"] = round(time.monotonic() - started, 1)
    return report


def _check_topics(
    d: Deployment, expected: Expected, report: InvariantReport, deadline: float
) -> None:
    # Dead letters first: a wrong one (a different decision) is the usual early sign of failure,
    # and once a wrong record is seen, waiting longer for missing ones cannot make the run pass.
    wrong = False

    def left() -> float:
        return 1.0 if wrong else max(1.0, deadline - time.monotonic())

    def dead_identity(r: TailedRecord) -> tuple[Position, str]:
        return (_dead_position(r), dict(r.headers)["error"].decode())

    wanted_dead = set(expected.dead.items())
    missing_dead, wrong = _await_all(
        d.bootstrap, d.topic("deadletter"), wanted_dead, dead_identity, left()
    )
    dead_now = _read(d.bootstrap, d.topic("deadletter"))
    wrong = wrong or any(dead_identity(r) not in wanted_dead for r in dead_now)
    missing: dict[str, set[Any]] = {}
    for stream in STREAMS:
        judged = (lambda r: _event(r) in ENGINE_FACTS) if stream == "nodes" else (lambda _r: True)
        wanted = set(expected.outputs[stream])
        missing[stream], seen_wrong = _await_all(
            d.bootstrap, d.topic(stream), wanted, _ce_id, left(), judged
        )
        wrong = wrong or seen_wrong
    problems: list[str] = []
    figures = report.figures
    figures["inputs"] = expected.inputs
    for stream in STREAMS:
        records = _read(d.bootstrap, d.topic(stream))
        if stream == "nodes":
            modelled = [r for r in records if _event(r) in ENGINE_FACTS]
            figures["nodes_other_facts"] = len(records) - len(modelled)
            records = modelled
        ids = [_ce_id(r) for r in records]
        distinct = set(ids)
        want = expected.outputs[stream]
        extra = distinct - set(want)
        figures[f"{stream}_records"] = len(ids)
        figures[f"{stream}_repeats"] = len(ids) - len(distinct)
        for i in sorted(missing[stream]):
            key, event = want[i]
            problems.append(f"{stream}: missing {event} key={key} ce_id={i}")
        for r in records:
            if _ce_id(r) in extra:
                body = r.value.decode(errors="replace")[:160] if r.value else ""
                problems.append(f"{stream}: unexpected [{r.partition}:{r.offset}] {body}")
                extra.discard(_ce_id(r))
    dead = _read(d.bootstrap, d.topic("deadletter"))
    codes: dict[Position, set[str]] = {}
    for r in dead:
        codes.setdefault(_dead_position(r), set()).add(dict(r.headers)["error"].decode())
    figures["deadletter_records"] = len(dead)
    figures["deadletter_repeats"] = len(dead) - len(codes)
    for position, code in sorted(missing_dead):
        problems.append(f"deadletter: missing {code} for input {position}")
    for position, found in sorted(codes.items()):
        if found != {expected.dead.get(position)}:
            problems.append(
                f"deadletter: input {position} has {sorted(found)}, expected "
                f"{expected.dead.get(position)}"
            )
    figures["cdr_expected"] = len(expected.outputs["cdr"])
    figures["deadletter_expected"] = len(expected.dead)
    report.add(
        "no record lost, none invented",
        problems,
        f"{expected.inputs} inputs: {len(expected.outputs['cdr'])} CDR records, "
        f"{len(expected.outputs['nodes'])} node facts, "
        f"{len(expected.outputs['notifications'])} notices, {len(expected.dead)} dead letters, "
        f"all there with their ce_id, nothing else (repeats: {figures['cdr_repeats']} CDR, "
        f"{figures['deadletter_repeats']} dead letters)",
    )


def _check_crashes(
    d: Deployment, expected: Expected, report: InvariantReport, simulated: int | None
) -> None:
    decided: dict[tuple[str, int], set[str]] = {}
    for r in _read(d.bootstrap, d.topic("cdr")):
        body = json.loads(r.value or b"null")
        if isinstance(body, dict) and body.get("event") == "nodeCrashed":
            decided.setdefault((body["id"], body["timeOfDisconnection"]), set()).add(_ce_id(r))
    problems = [f"{k} decided {len(ids)} ways" for k, ids in decided.items() if len(ids) > 1]
    problems += [f"crash {k} never decided" for k in sorted(expected.crashes - set(decided))]
    problems += [
        f"crash {k} decided but not in the log" for k in sorted(set(decided) - expected.crashes)
    ]
    if simulated is not None and len(expected.crashes) != simulated:
        problems.append(
            f"the simulator injected {simulated} crashes, the log calls for {len(expected.crashes)}"
        )
    report.figures["crashes"] = len(decided)
    report.add(
        "every crash decided exactly once",
        problems,
        f"{len(decided)} crashes, one "
        f"nodeCrashed ce_id each" + (f" (simulator: {simulated})" if simulated is not None else ""),
    )


def _check_sql(
    d: Deployment,
    expected: Expected,
    report: InvariantReport,
    database_url: str,
    postgres_url: str | None,
    tmp_dir: Any,
    deadline: float,
) -> None:
    engine = make_engine(database_url)
    problems: list[str] = []
    try:
        try:
            left = max(1.0, deadline - time.monotonic())
            asyncio.run(
                wait_caught_up(d.projector_settings(database_url), ProjectionStore(engine), left)
            )
        except TimeoutError as e:
            problems.append(str(e))
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(models.cdr_events)).scalar_one()
        report.figures["sql_cdr_events"] = rows
        if rows != len(expected.outputs["cdr"]):
            problems.append(
                f"cdr_events has {rows} rows, the CDR {len(expected.outputs['cdr'])} events"
            )
        url = fresh_database_url("postgresql", tmp_dir, postgres_url)
        rebuilt = migrated_engine(url)
        try:
            asyncio.run(rebuild(d.projector_settings(url)))
            live, fresh = _projection(snapshot(engine)), _projection(snapshot(rebuilt))
        finally:
            rebuilt.dispose()
        for table in sorted(live):
            if live[table] != fresh[table]:
                problems.append(f"{table}: {_first_difference(live[table], fresh[table])}")
    finally:
        engine.dispose()
    report.add(
        "SQL equals a rebuild from the CDR",
        problems,
        f"{report.figures['sql_cdr_events']} CDR events; every projection table row for "
        "row equal to a rebuild into an empty database",
    )


def _projection(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The projector's tables and positions (the webhooks service keeps its own positions in
    the same table)."""
    tables = dict(tables)
    tables["consumed_positions"] = [
        r for r in tables["consumed_positions"] if r["consumer"] == PROJECTOR
    ]
    return tables


def _first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    if len(a) != len(b):
        return f"{len(a)} rows live, {len(b)} rebuilt"
    for x, y in zip(a, b, strict=True):
        if x != y:
            return f"live {x} != rebuilt {y}"
    return "equal"


def _check_webhooks(
    d: Deployment, receiver: Receiver, report: InvariantReport, deadline: float
) -> None:
    order: dict[str, list[str]] = {}  # record key → ce_ids in first-occurrence order
    seen: set[str] = set()
    for r in sorted(_read(d.bootstrap, d.topic("cdr")), key=lambda r: (r.partition, r.offset)):
        i = _ce_id(r)
        if i not in seen:
            seen.add(i)
            order.setdefault((r.key or b"").decode(), []).append(i)
    problems: list[str] = []
    try:
        receiver.wait(
            lambda rs: seen <= {q.headers["webhook-id"] for q in rs if q.status < 300},
            timeout=max(1.0, deadline - time.monotonic()),
        )
    except TimeoutError:
        got = receiver.delivered_ids()
        problems += [f"never delivered: {i}" for i in sorted(seen - got)]
    requests = list(receiver.requests)
    first = first_deliveries(requests)
    key_of = {i: k for k, ids in order.items() for i in ids}
    for key, ids in order.items():
        got = [i for i in first if key_of.get(i) == key]
        if got != ids[: len(got)]:
            at = next(i for i, (a, b) in enumerate(zip(got, ids, strict=False)) if a != b)
            times: dict[str, float] = {}
            for q in requests:
                if q.status < 300:
                    times.setdefault(q.headers["webhook-id"], q.at)
            shown = list(dict.fromkeys([*ids[at : at + 3], *got[at : at + 3]]))
            problems.append(
                f"key {key}: delivered out of order from #{at}: CDR order {ids[at : at + 3]}, "
                f"first deliveries {got[at : at + 3]}; first 2xx at "
                + ", ".join(f"{i[:8]} {times.get(i, 0):.3f}" for i in shown)
            )
    delivered = Counter(q.headers["webhook-id"] for q in requests if 200 <= q.status < 300)
    report.figures["webhook_requests"] = len(requests)
    report.figures["webhook_failed_attempts"] = sum(1 for q in requests if q.status >= 300)
    report.figures["webhook_redeliveries"] = sum(n - 1 for n in delivered.values())
    report.add(
        "every webhook delivered, in order per session",
        problems,
        f"{len(seen)} webhook-ids delivered at least once, in CDR order per key "
        f"({report.figures['webhook_redeliveries']} delivered again, "
        f"{report.figures['webhook_failed_attempts']} failed attempts)",
    )
