"""`rebuild` writes each batch while it parses the next: the writes stay one at a time, in order,
all of them are done when the block ends, and a failed write stops the rebuild with its error."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.projector.batches import BatchReport, ParsedBatch
from services.projector.rebuild import BatchWriter


def batch(n: int) -> ParsedBatch:
    parsed = ParsedBatch()
    parsed.report.read = n
    return parsed


class FakeStore:
    """Records the order of writes; fails on the batch of ``fail_on`` records, if given."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.applied: list[int] = []
        self.fail_on = fail_on
        self.busy = threading.Lock()

    def apply(self, parsed: ParsedBatch) -> BatchReport:
        assert self.busy.acquire(blocking=False), "two writes at once"
        try:
            if parsed.report.read == self.fail_on:
                raise RuntimeError("the database refused")
            self.applied.append(parsed.report.read)
            return parsed.report
        finally:
            self.busy.release()


def test_batches_are_written_in_order_and_all_before_the_block_ends() -> None:
    store, reported = FakeStore(), []

    async def main() -> None:
        async with BatchWriter(store.apply, lambda r: reported.append(r.read)) as writer:
            for n in range(1, 6):
                await writer.write(batch(n))

    asyncio.run(main())
    assert store.applied == reported == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("fail_on", [2, 5])
def test_a_failed_write_stops_with_its_error(fail_on: int) -> None:
    store, reported = FakeStore(fail_on=fail_on), []

    async def main() -> None:
        async with BatchWriter(store.apply, lambda r: reported.append(r.read)) as writer:
            for n in range(1, 6):
                await writer.write(batch(n))

    with pytest.raises(RuntimeError, match="refused"):
        asyncio.run(main())
    assert store.applied == reported == list(range(1, fail_on))


def test_an_error_while_reading_waits_for_the_write_in_progress() -> None:
    store = FakeStore()

    async def main() -> None:
        async with BatchWriter(store.apply, lambda _r: None) as writer:
            await writer.write(batch(1))
            raise KeyError("the broker went away")

    with pytest.raises(KeyError):
        asyncio.run(main())
    assert store.applied == [1]
