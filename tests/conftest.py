"""Session-wide servers for the tests, and markers derived from where a test lives.

The servers are lazy: a session that asks for neither starts nothing, so unit tests stay fast.
An environment variable points a fixture at an existing server instead (CI services, a running
`make up`). A server that cannot start fails the tests that need it, with the reason: a skipped
integration test looks green and hides the problem.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import pytest

from services.localdev import LocalInfraError
from services.localdev.kafka import running_kafka
from services.localdev.postgres import running_postgres

TESTS_DIR = Path(__file__).resolve().parent
MARKED_FOLDERS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder, so `-m integration` and `-m "not e2e"` need no per-file markers."""
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        if folder in MARKED_FOLDERS:
            item.add_marker(MARKED_FOLDERS[folder])


def _serve(server: AbstractContextManager[str], what: str) -> Iterator[str]:
    """Yield what `server` yields; turn a start failure into a test failure that says why."""
    with ExitStack() as stack:
        try:
            address = stack.enter_context(server)
        except LocalInfraError as exc:
            pytest.fail(f"could not start {what}: {exc}", pytrace=False)
        yield address


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real broker: $MEDIACDR_KAFKA_BOOTSTRAP, or one started here."""
    configured = os.environ.get("MEDIACDR_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    yield from _serve(running_kafka(tmp_path_factory.mktemp("kafka")), "a local Kafka broker")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLAlchemy URL of an empty PostgreSQL database: $MEDIACDR_TEST_POSTGRES_URL, or a
    throwaway cluster started here."""
    configured = os.environ.get("MEDIACDR_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    yield from _serve(running_postgres(tmp_path_factory.mktemp("postgres")), "PostgreSQL")
