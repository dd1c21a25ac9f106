"""The detector's Faust app, with one fix to how its consumer hands partitions to aiokafka.

D11 (docs/RELIABILITY.md): after a rebalance, a worker's table recovery could wait until the
next rebalance for changelog records it had already consumed. Faust 0.15 gives the consumer
thread its *live* set of partitions to fetch from (``Consumer._active_partitions``). A fetch
can still be waiting in that thread when a rebalance pauses every partition and so empties the
set. aiokafka reads an empty set as "every partition" (``Fetcher.fetched_records``:
``if partitions and tp not in partitions``). The waiting fetch then takes whatever aiokafka has
buffered, including the changelog records recovery has just sought back to read. Faust finds
its flow stopped and drops them, but they count as consumed, so recovery never sees them.

:class:`FetchSet` is never falsy, so an empty set means "no partition" to aiokafka too.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers.aiokafka import Consumer, Transport
from faust.types import TransportT

__all__ = ["DetectorApp", "FetchSet", "GuardedConsumer"]


class FetchSet(set[Any]):
    """The partitions to fetch from: true even when empty (an empty set is "all" to aiokafka)."""

    def __bool__(self) -> bool:
        return True


class GuardedConsumer(Consumer):
    """Faust's aiokafka consumer whose set of partitions to fetch from is a :class:`FetchSet`."""

    def _reset_state(self) -> None:  # Faust's consumer calls it on creation and on restart
        super()._reset_state()
        self._active_partitions = FetchSet()


class GuardedTransport(Transport):
    Consumer = GuardedConsumer


class DetectorApp(faust.App):
    """A Faust app whose consumer is a :class:`GuardedConsumer`."""

    def _new_transport(self) -> TransportT:
        return GuardedTransport(self.conf.broker_consumer, self)
