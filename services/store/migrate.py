"""`mediacdr migrate`: Alembic owns the schema; this runs it with the services' settings."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from services.core.errors import MediaCdrError

__all__ = ["SchemaNotReady", "alembic_config", "check_schema", "checked_engine", "upgrade"]

_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    config = Config(str(_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


class SchemaNotReady(MediaCdrError):
    """The database is not at the schema this code needs."""


def check_schema(engine: Engine) -> None:
    """Raise ``SchemaNotReady`` unless the database is at the newest migration."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        raise SchemaNotReady(
            f"the database {where} is at schema {current or 'none'}, this version needs {head}: "
            "run `mediacdr migrate` (MEDIACDR_DATABASE_URL)"
        )


def checked_engine(database_url: str, *, busy_timeout_ms: int) -> Engine:
    """An engine on a database at the newest migration, or ``SchemaNotReady`` saying what to do."""
    from services.store.engine import make_engine

    engine = make_engine(database_url, busy_timeout_ms=busy_timeout_ms)
    try:
        check_schema(engine)
    except Exception:
        engine.dispose()
        raise
    return engine
