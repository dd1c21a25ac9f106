"""Fresh, migrated databases for store tests: a SQLite file, or a new database on PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from services.store import make_engine, models
from services.store.migrate import upgrade
from services.store.projection import PROJECTION_TABLES

__all__ = ["fresh_database_url", "migrated_engine", "snapshot"]


def fresh_database_url(backend: str, tmp_path: Path, postgres_url: str | None = None) -> str:
    """An empty database of ``backend``; on PostgreSQL a new database on the test server."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
    assert postgres_url is not None
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(postgres_url).set(database=name).render_as_string(hide_password=False)


def migrated_engine(url: str) -> Engine:
    upgrade(url)
    return make_engine(url)


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every projection row and consumed position, in key order, for row-for-row comparison.

    Leaves out what legitimately differs between two equal projections: when a position was
    written.
    """
    tables = {t.name: t for t in PROJECTION_TABLES}
    tables["consumed_positions"] = models.consumed_positions
    found: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for name, table in tables.items():
            columns = [c for c in table.c if c.name != "updated_at"]
            query = select(*columns).order_by(*table.primary_key.columns)
            found[name] = [dict(row._mapping) for row in conn.execute(query)]
    return found
