"""Kafka consumers that read partitions by explicit assignment (tail, export, rebuild, lag).

Always ``auto_offset_reset="earliest"`` and no group: aiokafka starts resetting a freshly assigned
partition with the reset policy at once, and with the default ("latest") a ``seek_to_beginning``
that follows can race a long-poll fetch at the end of the log and stall reading for seconds (seen
on rebuild). Seeking explicitly from "earliest" has no such race.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer

__all__ = ["started_reader"]


@asynccontextmanager
async def started_reader(bootstrap: str, **options: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a group, stopped on exit (also when starting fails)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()
