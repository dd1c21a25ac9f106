"""Alembic owns the schema: upgrade an empty database to head, no drift, down and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from services.store import make_engine, metadata
from services.store.migrate import alembic_config


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_matches_models_and_round_trips(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'mediacdr.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    config = alembic_config(url)
    command.upgrade(config, "head")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
            assert diff == []
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == "0005"
        command.downgrade(config, "base")
        with engine.connect() as connection:
            assert "alembic_version" in inspect(connection).get_table_names()
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 0
        command.upgrade(config, "head")
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}", busy_timeout_ms=1234)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 1234
    finally:
        engine.dispose()
