"""schemathesis generates requests from the API's own OpenAPI spec: no request may get a 5xx.

The app runs in process on a projected story (SQLite) with a real broker behind the ingest
endpoints; requests carry the API secret, so generation reaches the handlers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from services.api.app import create_app
from services.store.projection import ProjectionStore
from tests.api.test_api import AUTH, settings_for
from tests.support.cdr_story import cdr_story
from tests.support.databases import fresh_database_url, migrated_engine
from tests.support.services import new_deployment


@pytest.fixture(scope="module")
def api_schema(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[schemathesis.BaseSchema]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    deployment = new_deployment(kafka_bootstrap, workdir)
    url = fresh_database_url("sqlite", workdir)
    engine = migrated_engine(url)
    records = cdr_story().records
    ProjectionStore(engine).apply(records, {(r.topic, r.partition): r.offset + 1 for r in records})
    app = create_app(settings_for(deployment, url), engine)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    engine.dispose()


def test_no_request_gets_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    """Every operation of the spec, 30 generated requests each (schemathesis' pytest plugin
    does not run under pytest 9, so the strategies are driven with hypothesis directly)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

        no_server_error()
