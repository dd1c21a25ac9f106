"""The projection store contract, on SQLite and PostgreSQL.

The rows come from a realistic log produced by the real rule engine (tests/support/cdr_story.py).
The same log applied in one batch, record by record, in any interleaving of partitions, with
redeliveries, gives the same rows; and the rows say what happened.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from services.core import codec
from services.core.projection import ProjectedRecord, parse_record
from services.store import models
from services.store.projection import Position, ProjectionStore
from tests.support.cdr_story import (
    BLIP,
    CRASH_AT,
    DISCONNECT_AT,
    INCIDENT,
    LATE_AT,
    NODE_A,
    NODE_B,
    NODE_BACK_AT,
    RECREATED_AT,
    cdr_story,
    to_records,
)
from tests.support.databases import fresh_database_url, migrated_engine, snapshot
from tests.support.rules_builders import (
    GRACE_MS,
    T0,
    Rig,
    node_connected,
    node_disconnected,
    participant_joined,
    session_created,
)

pytestmark = pytest.mark.contract

NewEngine = Callable[[], Engine]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_engine(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NewEngine]:
    engines: list[Engine] = []

    def make() -> Engine:
        pg = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
        engine = migrated_engine(fresh_database_url(backend, tmp_path, pg))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def apply_in_batches(
    store: ProjectionStore, records: Sequence[ProjectedRecord], sizes: Sequence[int]
) -> None:
    start, i = 0, 0
    while start < len(records):
        size = sizes[i % len(sizes)]
        batch = records[start : start + size]
        positions: dict[Position, int] = {}
        for r in batch:
            positions[(r.topic, r.partition)] = r.offset + 1
        store.apply(batch, positions)
        start, i = start + size, i + 1


def interleaving(records: Sequence[ProjectedRecord], seed: int) -> list[ProjectedRecord]:
    """A random merge of the per-partition sequences: what a consumer may read."""
    rng = random.Random(seed)
    queues: dict[tuple[str, int], list[ProjectedRecord]] = {}
    for r in records:
        queues.setdefault((r.topic, r.partition), []).append(r)
    merged = []
    while queues:
        key = rng.choice(sorted(queues))
        merged.append(queues[key].pop(0))
        if not queues[key]:
            del queues[key]
    return merged


def test_the_rows_say_what_happened(new_engine: NewEngine) -> None:
    engine = new_engine()
    store = ProjectionStore(engine)
    apply_in_batches(store, cdr_story().records, [1000])
    with engine.connect() as conn:
        sessions = {r.unique_session_id: r for r in conn.execute(select(models.sessions))}
        alpha = sessions[f"ses_Alpha_{T0 + 100}"]
        assert (alpha.media_node_id, alpha.reason) == (NODE_A, "nodeCrashed")
        assert alpha.destroyed_at == at(CRASH_AT)
        assert alpha.media_lost_at == at(DISCONNECT_AT)
        assert alpha.incident_id == INCIDENT
        gamma = sessions[f"ses_Gamma_{T0 + 4_000}"]
        assert (gamma.reason, gamma.media_lost_at, gamma.duration_s) == (
            "lastParticipantLeft",
            None,
            60,
        )
        assert sessions[f"ses_Alpha_{RECREATED_AT}"].media_node_id == NODE_B
        assert sessions[f"ses_Beta_{LATE_AT}"].destroyed_at is None

        incidents = {r.incident_id: r for r in conn.execute(select(models.node_incidents))}
        blip, crash = incidents[BLIP], incidents[INCIDENT]
        assert (blip.outcome, blip.sessions_closed, blip.crashed_at) == ("reconnected", 0, None)
        assert blip.reconnected_at == at(T0 + 2_500)
        assert (crash.outcome, crash.cause, crash.media_node_id) == (
            "crashed",
            "disconnected",
            NODE_A,
        )
        assert (crash.disconnected_at, crash.deadline_at) == (at(DISCONNECT_AT), at(CRASH_AT))
        assert (crash.crashed_at, crash.recovered_at) == (at(CRASH_AT), at(NODE_BACK_AT))
        assert (crash.sessions_closed, crash.participants_evicted) == (2, 3)
        assert (crash.recordings_stopped, crash.broadcasts_stopped) == (1, 1)

        nodes = {r.id: r for r in conn.execute(select(models.media_nodes))}
        a = nodes[NODE_A]
        assert (a.status, a.connected, a.cluster_id) == ("running", True, "MY_CLUSTER")
        assert (a.crashed_at, a.recovered_at) == (at(CRASH_AT), at(NODE_BACK_AT))
        assert a.disconnected_at == at(DISCONNECT_AT)
        assert nodes[NODE_B].connected is True

        (recording,) = conn.execute(select(models.recordings)).all()
        assert (recording.status, recording.reason) == ("stopped", "nodeCrashed")
        assert (recording.started_at, recording.stopped_at) == (at(T0 + 500), at(CRASH_AT))

        participants = conn.execute(select(models.participants)).all()
        evicted = [p for p in participants if p.reason == "nodeCrashed"]
        assert sorted(p.connection_id for p in evicted) == ["con_Ann", "con_Bob", "con_Cid"]
        assert all(p.left_at == at(CRASH_AT) for p in evicted)

        recoveries = {
            r.old_unique_session_id: r for r in conn.execute(select(models.session_recoveries))
        }
        alpha_back = recoveries[f"ses_Alpha_{T0 + 100}"]
        assert alpha_back.new_unique_session_id == f"ses_Alpha_{RECREATED_AT}"
        assert (alpha_back.from_node, alpha_back.to_node) == (NODE_A, NODE_B)
        assert alpha_back.time_to_recover_ms == RECREATED_AT - CRASH_AT
        assert (alpha_back.participants_before, alpha_back.participants_returned) == (2, 2)
        beta = recoveries[f"ses_Beta_{T0 + 3_000}"]
        assert (beta.new_unique_session_id, beta.participants_before) == (None, 1)

        events = conn.execute(select(models.cdr_events.c.event_id)).all()
        assert len(events) == sum(1 for r in cdr_story().records if r.source == "cdr")


@pytest.mark.parametrize("seed", range(3))
def test_rows_do_not_depend_on_interleaving_batching_or_redelivery(
    new_engine: NewEngine,
    seed: int,
) -> None:
    records = cdr_story().records
    reference = new_engine()
    apply_in_batches(ProjectionStore(reference), records, [len(records)])

    rng = random.Random(seed)
    shuffled = interleaving(records, seed)
    redelivered = shuffled[: rng.randrange(len(shuffled))] + shuffled  # a replay after a crash
    other = new_engine()
    apply_in_batches(ProjectionStore(other), redelivered, [1, 7, 3, 20])
    assert snapshot(other) == snapshot(reference)


def test_a_batch_is_all_or_nothing(new_engine: NewEngine) -> None:
    """A failure at the last step (the position) leaves neither rows nor position behind."""
    engine = new_engine()
    store = ProjectionStore(engine)
    records = cdr_story().records
    with pytest.raises(IntegrityError):
        store.apply(records, {("mediacdr.cdr", None): 6})  # type: ignore[dict-item]
    assert all(rows == [] for rows in snapshot(engine).values())


def test_positions_only_move_forward(new_engine: NewEngine) -> None:
    store = ProjectionStore(new_engine())
    store.apply([], {("mediacdr.cdr", 3): 10})
    store.apply([], {("mediacdr.cdr", 3): 4, ("mediacdr.nodes", 0): 2})
    assert store.positions() == {("mediacdr.cdr", 3): 10, ("mediacdr.nodes", 0): 2}


def test_reset_empties_the_projection_and_its_positions(new_engine: NewEngine) -> None:
    store = ProjectionStore(new_engine())
    apply_in_batches(store, cdr_story().records, [50])
    assert not store.is_empty()
    store.reset()
    assert store.is_empty()
    assert store.positions() == {}


def test_recovery_window_is_respected(new_engine: NewEngine) -> None:
    store = ProjectionStore(new_engine(), recovery_window=timedelta(seconds=1))
    apply_in_batches(store, cdr_story().records, [1000])
    with store.engine.connect() as conn:
        linked = (
            conn.execute(select(models.session_recoveries.c.new_unique_session_id)).scalars().all()
        )
    assert linked == [None, None]


@pytest.mark.parametrize("sizes", [[1], [4, 9]])
def test_a_recovery_read_before_its_crash_is_linked_the_same(
    new_engine: NewEngine, sizes: list[int]
) -> None:
    """A detector catching up on a backlog may copy a session's re-creation (on another node)
    before it decides the crash that closed the old incarnation: on the one CDR partition the new
    `sessionCreated` and its joins then come first. Read in separate batches, the rows must
    equal those of one batch, where the crash and the re-creation meet."""

    def recreated(r: ProjectedRecord) -> bool:
        return r.body.get("sessionId") == "ses_Alpha" and r.timestamp >= RECREATED_AT

    def crashed(r: ProjectedRecord) -> bool:
        return r.body.get("sessionId") == "ses_Alpha" and r.body.get("reason") == "nodeCrashed"

    records = cdr_story().records
    early = [r for r in records if recreated(r)]
    rest = [r for r in records if not recreated(r)]
    first_crash = next(i for i, r in enumerate(rest) if crashed(r))
    reordered = rest[:first_crash] + early + rest[first_crash:]
    offsets: dict[tuple[str, int], int] = {}
    for i, r in enumerate(reordered):  # the offsets follow the order the CDR now has
        where = (r.topic, r.partition)
        offsets[where] = offsets.get(where, -1) + 1
        reordered[i] = dataclasses.replace(r, offset=offsets[where])
    reference = new_engine()
    apply_in_batches(ProjectionStore(reference), reordered, [len(reordered)])
    other = new_engine()
    apply_in_batches(ProjectionStore(other), reordered, sizes)
    assert snapshot(other) == snapshot(reference)
    with other.connect() as conn:
        (alpha,) = conn.execute(
            select(models.session_recoveries).where(
                models.session_recoveries.c.session_id == "ses_Alpha"
            )
        ).all()
    assert alpha.new_unique_session_id == f"ses_Alpha_{RECREATED_AT}"
    assert (alpha.participants_before, alpha.participants_returned) == (2, 2)


MOVED = "ses_Moved"
FIRST, SECOND, THIRD = T0 + 100, T0 + 10_000, T0 + 16_000  # its three incarnations


def _moved_twice() -> list[ProjectedRecord]:
    """A session re-created after each of two crashes, on a third node at last, with the CDR
    order the two-minute soak found on 2026-11-26: the third incarnation's records were copied
    (by the node agent of the third node) before the first crash was decided and before the
    second incarnation was copied (both waited on their nodes' liveness)."""
    rig, out = Rig(), []
    nodes = ["media_i-0m01", "media_i-0m02", "media_i-0m03"]
    for i, node in enumerate(nodes):
        out += rig.liveness(node_connected(node, T0 + i))
    for node, created in zip(nodes, (FIRST, SECOND, THIRD), strict=True):
        out += rig.session(node, session_created(MOVED, created, node))
        if created == THIRD:
            out += rig.session(node, participant_joined(MOVED, "con_M1", created + 100))
            out += rig.session(node, participant_joined(MOVED, "con_M2", created + 200))
        else:
            out += rig.liveness(node_disconnected(node, created + 1000))
            out += rig.advance(node, created + 1000 + GRACE_MS)
    records = to_records(out, "mediacdr.cdr", "mediacdr.nodes")

    def place(r: ProjectedRecord) -> int:
        usid = str(r.body.get("uniqueSessionId", ""))
        if r.body.get("sessionId") != MOVED:
            return 0
        if usid == f"{MOVED}_{FIRST}":
            return 1 if r.event == "sessionCreated" else 3
        if usid == f"{MOVED}_{THIRD}":
            return 2
        return 4 if r.event == "sessionCreated" else 5

    reordered = sorted(records, key=place)  # stable: each group keeps its own order
    offsets: dict[tuple[str, int], int] = {}
    for i, r in enumerate(reordered):
        where = (r.topic, r.partition)
        offsets[where] = offsets.get(where, -1) + 1
        reordered[i] = dataclasses.replace(r, offset=offsets[where])
    return reordered


@pytest.mark.parametrize("sizes", [[1], [2, 5], [3]])
def test_recoveries_follow_event_time_whatever_order_and_batches_they_are_read_in(
    new_engine: NewEngine, sizes: list[int]
) -> None:
    """Each re-creation recovers the crash just before it (the first incarnation's crash → the
    second, the second's → the third), read in one batch or record by record. Before, read
    record by record, the first crash took the third incarnation (the only one projected when
    the crash was read), and SQL differed from a rebuild."""
    records = _moved_twice()
    reference = new_engine()
    apply_in_batches(ProjectionStore(reference), records, [len(records)])
    other = new_engine()
    apply_in_batches(ProjectionStore(other), records, sizes)
    with other.connect() as conn:
        rows = conn.execute(
            select(models.session_recoveries).where(models.session_recoveries.c.session_id == MOVED)
        ).all()
    links = {
        (r.old_unique_session_id, r.new_unique_session_id, r.participants_returned) for r in rows
    }
    assert links == {
        (f"{MOVED}_{FIRST}", f"{MOVED}_{SECOND}", 0),
        (f"{MOVED}_{SECOND}", f"{MOVED}_{THIRD}", 2),
    }
    assert snapshot(other) == snapshot(reference)


def test_values_come_back_as_they_were_read(new_engine: NewEngine) -> None:
    """Records parsed as the projector parses them (carrying their contributions); on PostgreSQL
    each table's rows travel as one JSON document, so text JSON must escape, non-ASCII text,
    floats, large integers and times must all come back unchanged."""
    tricky = 'Zoë "quoted" \\ back\nslash \u2028 ✓ 日本 {"not": "json"}'
    usid = f"ses_X_{T0}"
    joined = {
        "event": "participantJoined",
        "timestamp": T0 + 1,
        "sessionId": "ses_X",
        "uniqueSessionId": usid,
        "connectionId": "con_1",
        "location": tricky,
        "ip": "10.0.0.1",
        "platform": "Firefox 131",
        "clientData": '{"json": "in a string"}',
        "serverData": "",
    }
    stopped = {
        "event": "recordingStatusChanged",
        "timestamp": T0 + 2,
        "sessionId": "ses_X",
        "uniqueSessionId": usid,
        "id": "ses_X~1",
        "name": tricky,
        "outputMode": "COMPOSED",
        "startTime": T0 + 1,
        "status": "ready",
        "reason": "recordingStoppedByServer",
        "duration": 12.25,
        "size": 2**40 + 1,
    }
    records = []
    for offset, body in enumerate([joined, stopped]):
        headers = [("ce_medianodeid", "media_ü-1".encode())]
        parsed = parse_record("cdr", "cdr", 0, offset, codec.encode_value(body), headers)
        assert isinstance(parsed, ProjectedRecord) and parsed.contributions is not None
        records.append(parsed)
    engine = new_engine()
    ProjectionStore(engine).apply(records, {("cdr", 0): 2})
    with engine.connect() as conn:
        (person,) = conn.execute(select(models.participants)).all()
        (recording,) = conn.execute(select(models.recordings)).all()
        (node,) = conn.execute(select(models.media_nodes)).all()
        payloads = conn.execute(
            select(models.cdr_events.c.payload).order_by(models.cdr_events.c.source_offset)
        ).scalars()
        assert list(payloads) == [joined, stopped]
    assert (person.location, person.client_data, person.server_data) == (
        tricky,
        '{"json": "in a string"}',
        "",
    )
    assert person.joined_at == at(T0 + 1)
    assert (recording.name, recording.duration_s, recording.size_bytes) == (
        tricky,
        12.25,
        2**40 + 1,
    )
    assert (recording.started_at, recording.stopped_at) == (at(T0 + 1), at(T0 + 2))
    assert (node.id, node.connected, node.status) == ("media_ü-1", True, None)
