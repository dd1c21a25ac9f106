"""The sender's loop: up to ``concurrency`` attempts in flight, one per (subscription, record
key), their results stored in batches.

Each turn is one worker-thread call and one transaction (``WebhookStore.turn``): store the
attempts answered since the last turn, then find what to send next:

1. the heads of the keys just answered (a key keeps its slot while it has work) and of keys
   found earlier and waiting for a slot — one index probe per key, whatever the backlog;
2. only if slots are still free, no known key is waiting, and something new may be due (new
   records, or the poll clock for retries): a scan for due keys, keeping up to ``page`` of them
   for later turns, so a backlog costs one scan per ``page`` keys, not one per turn.

A key stays busy from its launch until its result is stored, and its next head is read after
that, so per-key order holds across a kill -9, which re-sends at most the attempts that were in
flight or answered but not yet stored (one turn's worth). Batches size themselves: while one
turn's SQL runs, answers gather for the next (a group commit), and a busy dispatcher waits up to
``GATHER_S`` for half of its attempts to answer; with few attempts in flight each answer is
stored at once, so light load gets no added latency.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.store.webhook_outbox import Attempt, Due, Key
from services.store.webhooks import WebhookStore
from services.webhooks.sender import Sender

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)
#: How long a busy dispatcher lets answers gather before a turn (see ``Dispatcher._gather``).
GATHER_S = 0.02


@dataclass
class _Found:
    heads: list[Due]  # of the keys asked for
    new: list[Due] = field(default_factory=list)  # of keys the scan discovered
    waiting: list[Key] = field(default_factory=list)  # discovered, for later turns
    scanned: int | None = None  # keys the scan returned (None: no scan)


class Dispatcher:
    def __init__(
        self,
        store: WebhookStore,
        sender: Sender,
        concurrency: int,
        wake: asyncio.Event,
        *,
        page: int | None = None,
        owned: Callable[[], Collection[int] | None] = lambda: None,
    ) -> None:
        """``owned``: the CDR partitions whose deliveries this process sends, asked every turn
        (None: all). With several webhooks processes in one consumer group, each sends the
        deliveries of the partitions its outbox consumer is assigned, so one key's deliveries
        go out from one process at a time."""
        self.store, self.sender, self.concurrency, self.wake = store, sender, concurrency, wake
        self.page = page or 8 * concurrency
        self.owned = owned
        self.in_flight: dict[Key, asyncio.Task[Attempt]] = {}
        self.ready: dict[Key, None] = {}  # due keys found by a scan, waiting for a slot (FIFO)
        self.more = True  # the outbox may hold due keys that `ready` does not
        self.gone: set[str] = set()  # answered 410 since the last stored batch: launch no more
        self.answered = asyncio.Event()
        self.unstored = 0  # attempts answered and not yet taken for storing

    async def run(
        self, stop: asyncio.Event, beat: Callable[[], None], *, poll_s: float, drain_s: float
    ) -> None:
        """Turn until ``stop``, woken by answers and new records (``wake``); scan for due
        keys after new records and at least every ``poll_s`` (retries come due by the clock).
        Then finish and store what is in flight."""
        next_poll = 0.0
        try:
            while not stop.is_set():
                beat()
                if self.wake.is_set() or time.monotonic() >= next_poll:
                    self.wake.clear()
                    self.more = True
                    next_poll = time.monotonic() + poll_s
                self.answered.clear()
                await self.turn(datetime.now(UTC))
                timeout = max(0.0, next_poll - time.monotonic())
                await _first_of((self.wake, self.answered, stop), timeout)
                await self._gather()
        except BaseException:  # the database went away, say: what is in flight is sent again
            for task in self.in_flight.values():
                task.cancel()
            await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
            raise
        await self.drain(drain_s)

    async def _gather(self) -> None:
        """When busy, let answers gather for a turn: attempts launched together answer
        together, and a turn for the first few would hold the rest back a whole turn (halving
        throughput). Idle or lightly loaded, turn at once: no latency is added there."""
        busy = len(self.in_flight) >= self.concurrency // 2
        deadline = time.monotonic() + GATHER_S
        while busy and 0 < self.unstored < len(self.in_flight) / 2:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.answered.clear()
            await _first_of((self.answered,), left)

    async def turn(self, now: datetime) -> None:
        """Store what was answered, then launch what is due."""
        answered = self._take_answered()
        free = self.concurrency - len(self.in_flight)
        if not answered and (free == 0 or not (self.ready or self.more)):
            return
        # Keys just answered usually continue; waiting keys fill the slots of those that do not.
        waiting = list(itertools.islice(self.ready, free))
        for key in waiting:
            del self.ready[key]
        keys = [k for k, _ in answered] + waiting
        known = {*self.in_flight, *self.ready, *keys}  # a scan skips these
        scan = self.more and not self.ready  # scan once the known backlog is used up
        found = await asyncio.to_thread(
            self._settle, [a for _, a in answered], keys, known, now, free, scan
        )
        self.gone -= {a.subscription_id for _, a in answered if a.result == "disabled"}
        if found.scanned is not None:
            self.more = found.scanned >= self.page
        left = self._launch([*found.heads, *found.new])
        for key in [*left, *found.waiting]:
            self.ready.setdefault(key)

    async def drain(self, timeout_s: float) -> None:
        """Wait for the attempts in flight and store them, so a clean stop re-sends nothing."""
        if self.in_flight:
            await asyncio.wait(list(self.in_flight.values()), timeout=timeout_s)
        answered = [a for _, a in self._take_answered()]
        await asyncio.to_thread(self.store.record_attempts, answered)

    def _settle(
        self,
        answered: list[Attempt],
        keys: list[Key],
        known: set[Key],
        now: datetime,
        free: int,
        scan: bool,
    ) -> _Found:
        with self.store.turn(self.owned()) as t:
            t.record(answered)
            found = _Found(t.heads(keys, now))
            if not scan or len(found.heads) >= free:
                return found
            due = t.due_keys(now, self.page)
            fresh = [k for k in due if k not in known]
            room = free - len(found.heads)
            found.new = t.heads(fresh[:room], now)
            found.waiting, found.scanned = fresh[room:], len(due)
            return found

    def _take_answered(self) -> list[tuple[Key, Attempt]]:
        self.unstored = 0
        answered = []
        for key, task in list(self.in_flight.items()):
            if not task.done():
                continue
            del self.in_flight[key]
            if task.cancelled():
                continue
            if (error := task.exception()) is not None:
                log.error("delivery attempt crashed", exc_info=error)
            else:
                answered.append((key, task.result()))
        return answered

    def _launch(self, due: Sequence[Due]) -> list[Key]:
        """Launch ``due`` while slots are free; returns the keys left without one."""
        left = []
        for d in due:
            key = (d.subscription_id, d.record_key)
            if key in self.in_flight or d.subscription_id in self.gone:
                continue
            if len(self.in_flight) >= self.concurrency:
                left.append(key)
                continue
            task = asyncio.create_task(self.sender.attempt(d))
            task.add_done_callback(self._on_answer)
            self.in_flight[key] = task
        return left

    def _on_answer(self, task: asyncio.Task[Attempt]) -> None:
        if not task.cancelled() and task.exception() is None and task.result().result == "disabled":
            self.gone.add(task.result().subscription_id)
        self.unstored += 1
        self.answered.set()


async def _first_of(events: Iterable[asyncio.Event], timeout_s: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
