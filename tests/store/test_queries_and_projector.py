"""The store's read queries and the projector's batch step, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy import Engine, func, select

from services.config import Topics
from services.core import codec
from services.projector.batches import Projector
from services.store import models, queries
from services.store.migrate import SchemaNotReady, check_schema
from services.store.projection import ProjectionStore
from tests.support.cdr_story import INCIDENT, NODE_A, NODE_B, cdr_story
from tests.support.databases import fresh_database_url, migrated_engine
from tests.support.rules_builders import T0

pytestmark = pytest.mark.contract


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    pg = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    engine = migrated_engine(fresh_database_url(str(request.param), tmp_path, pg))
    yield engine
    engine.dispose()


@pytest.fixture
def story(engine: Engine) -> Engine:
    records = cdr_story().records
    ProjectionStore(engine).apply(records, {(r.topic, r.partition): r.offset + 1 for r in records})
    return engine


def test_nodes_with_live_sessions(story: Engine) -> None:
    found = {n["id"]: n for n in queries.nodes(story)}
    assert (found[NODE_A]["live_sessions"], found[NODE_B]["live_sessions"]) == (0, 2)
    assert found[NODE_A]["status"] == "running"
    assert "status_order" not in found[NODE_A]


def test_sessions_filters(story: Engine) -> None:
    live = queries.sessions(story, active=True)
    assert {s["media_node_id"] for s in live} == {NODE_B}
    assert len(queries.sessions(story, active=False)) == 3
    assert len(queries.sessions(story, node=NODE_A)) == 2
    since = datetime.fromtimestamp((T0 + 3_000) / 1000, UTC)
    created = [s["created_at"] for s in queries.sessions(story, since=since)]
    assert created == sorted(created, reverse=True) and min(created) == since
    assert len(queries.sessions(story, until=since)) == 1
    assert len(queries.sessions(story, limit=2)) == 2


def test_incidents_and_recoveries(story: Engine) -> None:
    found = queries.incidents(story, node=NODE_A)
    assert [i["outcome"] for i in found] == ["crashed", "reconnected"]
    assert found[0]["incident_id"] == INCIDENT
    assert queries.incidents(story, node=NODE_B) == []
    recovered = [r for r in queries.recoveries(story) if r["new_unique_session_id"]]
    assert [r["session_id"] for r in recovered] == ["ses_Alpha"]


def _record(topic: str, partition: int, offset: int, value: bytes | None) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(
        topic, partition, offset, T0, 0, None, value, None, len(value or b""), 0, []
    )


def test_records_the_projector_cannot_use_advance_the_position_and_are_counted(
    engine: Engine,
) -> None:
    topics = Topics()
    store = ProjectionStore(engine)
    created = {
        "event": "sessionCreated",
        "timestamp": T0,
        "sessionId": "ses_X",
        "uniqueSessionId": f"ses_X_{T0}",
    }
    good = codec.encode_value(created)
    tp = TopicPartition(topics.topic_cdr, 4)
    batch = {
        tp: [
            _record(tp.topic, 4, 10, b"not json"),
            _record(tp.topic, 4, 11, b'{"event":"somethingNew","timestamp":1}'),
            _record(tp.topic, 4, 12, good),
            _record(tp.topic, 4, 13, good),  # the same event again: one row
            _record(tp.topic, 4, 14, b'{"event":"sessionCreated","timestamp":1}'),
        ]
    }
    report = Projector(topics, store).project(batch)
    assert report.read == 5
    assert (report.events, report.duplicates) == (1, 0)
    assert dict(report.skipped) == {"invalidJson": 1, "unknownEvent": 1, "schemaViolation": 1}
    assert store.positions() == {(topics.topic_cdr, 4): 15}
    again = Projector(topics, store).project({tp: [_record(tp.topic, 4, 12, good)]})
    assert (again.events, again.duplicates) == (0, 1)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(models.sessions)).scalar() == 1
    assert store.positions() == {(topics.topic_cdr, 4): 15}  # never moves back


def test_an_unmigrated_database_is_refused_with_the_fix(tmp_path: Path) -> None:
    from services.store import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaNotReady, match="mediacdr migrate"):
        check_schema(engine)
    engine.dispose()


def test_every_merge_rule_names_a_column_of_its_table_and_the_key_is_the_primary_key() -> None:
    from services.core.projection import TABLES, Latest

    for name, spec in TABLES.items():
        table = models.metadata.tables[name]
        assert tuple(c.name for c in table.primary_key.columns) == spec.key, name
        assert set(spec.columns) <= {c.name for c in table.c}, name
        for column, policy in spec.columns.items():
            if isinstance(policy, Latest):
                assert policy.order in spec.columns, (name, column)
