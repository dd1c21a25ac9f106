"""Fixtures shared by the store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services.store.webhooks import WebhookStore
from tests.support.databases import fresh_database_url, migrated_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def webhook_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebhookStore]:
    """A webhook store on a freshly migrated database of each backend."""
    pg = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    engine: Engine = migrated_engine(fresh_database_url(str(request.param), tmp_path, pg))
    yield WebhookStore(engine)
    engine.dispose()
