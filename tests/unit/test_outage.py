"""Riding out a database outage (services/store/outage.py): the service loop starts again after
the database went away, and stops for good when asked."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError
from sqlalchemy.exc import OperationalError

from services.core.errors import BrokerUnavailable
from services.store.outage import serve_through_outages


def _unreachable() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_the_loop_starts_again_until_the_database_is_back() -> None:
    lives: list[asyncio.Event] = []

    async def serve(inner: asyncio.Event) -> str:
        lives.append(inner)
        if len(lives) < 3:
            raise _unreachable()
        return "served"

    async def main() -> str | None:
        return await serve_through_outages(serve, asyncio.Event(), "test", first_delay_s=0.01)

    assert asyncio.run(main()) == "served"
    assert len(lives) == 3
    assert len({id(e) for e in lives}) == 3  # each life gets its own stop event


def test_a_stop_ends_the_waiting_and_reaches_the_loop() -> None:
    async def main() -> None:
        stop = asyncio.Event()
        seen: list[asyncio.Event] = []

        async def serve(inner: asyncio.Event) -> None:
            seen.append(inner)
            if len(seen) == 1:
                raise _unreachable()
            stop.set()  # SIGTERM while serving
            await inner.wait()  # the loop hears it

        assert await serve_through_outages(serve, stop, "test", first_delay_s=0.01) is None
        assert len(seen) == 2

    asyncio.run(main())


def test_other_errors_still_stop_the_service() -> None:
    async def serve(_inner: asyncio.Event) -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        asyncio.run(serve_through_outages(serve, asyncio.Event(), "test"))


def test_a_broker_down_at_a_restart_is_waited_for_but_not_at_the_first_start() -> None:
    lives: list[asyncio.Event] = []

    async def serve(inner: asyncio.Event) -> str:
        lives.append(inner)
        if len(lives) == 1:
            raise _unreachable()  # the database went away …
        if len(lives) < 4:
            raise KafkaConnectionError("Unable to bootstrap")  # … and the broker is restarting
        return "served"

    async def main() -> str | None:
        return await serve_through_outages(serve, asyncio.Event(), "test", first_delay_s=0.01)

    assert asyncio.run(main()) == "served"
    assert len(lives) == 4

    async def unreachable_at_once(_inner: asyncio.Event) -> None:
        raise BrokerUnavailable("Kafka at 127.0.0.1:1: unreachable")

    with pytest.raises(BrokerUnavailable):
        asyncio.run(serve_through_outages(unreachable_at_once, asyncio.Event(), "test"))
