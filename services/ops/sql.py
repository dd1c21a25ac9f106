"""`mediacdr sql`: run a query against the projection and print it; optionally wait for the
projector to have caught up with the topics first."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, text

from services.config import ProjectorSettings
from services.ops.tail import topic_partitions
from services.readers import started_reader
from services.store.projection import ProjectionStore

__all__ = ["query", "wait_caught_up"]


async def _ends(settings: ProjectorSettings) -> dict[tuple[str, int], int]:
    deadline = asyncio.get_running_loop().time() + 30
    tps = [
        tp
        for topic in (settings.topic_cdr, settings.topic_nodes)
        for tp in await topic_partitions(settings, topic, deadline)
    ]
    async with started_reader(settings) as consumer:
        ends = await consumer.end_offsets(tps)
    return {(tp.topic, tp.partition): end for tp, end in ends.items()}


async def wait_caught_up(
    settings: ProjectorSettings, store: ProjectionStore, timeout_s: float
) -> None:
    """Until the projection has applied every record that was on the topics when asked."""
    ends = await _ends(settings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        stored = await asyncio.to_thread(store.positions)
        missing = sum(max(0, end - stored.get(tp, 0)) for tp, end in ends.items())
        if not missing:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"the projector is still {missing} records behind")
        await asyncio.sleep(0.2)  # SQL has no change notification to await


def query(engine: Engine, sql: str) -> tuple[list[str], Sequence[Sequence[Any]]]:
    """Run ``sql`` in a transaction that is rolled back: this command never changes data."""
    with engine.connect() as conn:
        result = conn.execute(text(sql))
        columns = list(result.keys())
        rows = [tuple(row) for row in result] if result.returns_rows else []
        conn.rollback()
    return columns, rows
