"""The worker's side of the read positions (services/detector/reading.py), against small fakes
of Faust's consumer and table and of the broker's offsets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from services.detector.positions import position_key
from services.detector.reading import ReadPositions

SESSIONS = "mediacdr.sessions"
OTHER = "mediacdr.cdr"


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass
class Message:
    tp: TP
    offset: int


@dataclass
class Event:
    message: Message


def at(partition: int, offset: int) -> Event:
    return Event(Message(TP(SESSIONS, partition), offset))


class FakeTable(dict[str, Any]):
    """What ``write_durably`` uses of a Faust table: its store and its changelog."""

    def __init__(self, rows: Mapping[str, Any] | None = None) -> None:
        super().__init__(rows or {})
        self.data = self
        self.changelog: list[tuple[str, Any]] = []

    def send_changelog(self, partition: int | None, key: str, value: Any, **_: Any) -> Any:
        self.changelog.append((key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class FakeOffsets:
    committed_at: dict[tuple[str, int], int] = field(default_factory=dict)
    start_at: dict[tuple[str, int], int] = field(default_factory=dict)

    async def committed(self, partition: tuple[str, int]) -> int:
        return self.committed_at.get(partition, 0)

    async def starts(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {p: self.start_at.get(p, 0) for p in partitions}


class Completed:
    def is_set(self) -> bool:
        return True


@dataclass
class FakeConsumer:
    owned: list[TP]
    seeks: list[tuple[TP, int]] = field(default_factory=list)

    def assignment(self) -> list[TP]:
        return self.owned

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


class FakeApp:
    def __init__(self, owned: list[TP]) -> None:
        self.consumer = FakeConsumer(owned)
        self.consumer_generation_id = 1
        self.tables = type("Tables", (), {"recovery": type("R", (), {"completed": Completed()})})


def reading(
    owned: list[TP], table: FakeTable | None = None, offsets: FakeOffsets | None = None
) -> tuple[ReadPositions, FakeApp]:
    app = FakeApp(owned)
    keeper = ReadPositions(app, table or FakeTable(), offsets or FakeOffsets(), lambda: {SESSIONS})  # type: ignore[arg-type]
    return keeper, app


def test_where_reading_resumed_is_the_durable_position_not_the_groups_commit() -> None:
    """D9: Faust can commit past records it skipped; the marks and the route pruning must go by
    what was processed, or they vouch for records not read yet."""
    offsets = FakeOffsets(committed_at={(SESSIONS, 0): 9, (SESSIONS, 1): 4})
    keeper, _ = reading([TP(SESSIONS, 0), TP(SESSIONS, 1)], offsets=offsets)
    keeper.durable[(SESSIONS, 0)] = 5
    assert asyncio.run(keeper.resumed_at(TP(SESSIONS, 0))) == 5
    assert asyncio.run(keeper.resumed_at(TP(SESSIONS, 1))) == 4  # never started: the commit


def test_a_position_is_durable_only_once_its_write_is_acknowledged() -> None:
    keeper, _ = reading([TP(SESSIONS, 0)])
    admitted, positions, _ = asyncio.run(keeper.admit([at(0, 0), at(0, 1)]))
    assert [e.message.offset for e in admitted] == [0, 1]
    assert keeper.durable == {}, "durable before the effects of the batch"
    asyncio.run(keeper.advance(positions))
    assert keeper.durable == {(SESSIONS, 0): 2}
    assert keeper.table.changelog == [(position_key(SESSIONS, 0), 2)]


def test_replays_are_dropped_and_a_gap_reads_the_partition_again_once() -> None:
    table = FakeTable({position_key(SESSIONS, 0): 5})
    keeper, app = reading([TP(SESSIONS, 0)], table)
    admitted, positions, replays = asyncio.run(keeper.admit([at(0, 3), at(0, 4), at(0, 7)]))
    assert [e.message.offset for e in replays] == [3, 4]
    assert admitted == [] and positions == {}
    assert app.consumer.seeks == [(TP(SESSIONS, 0), 5)]
    asyncio.run(keeper.admit([at(0, 8)]))  # fetched before the seek took effect
    assert app.consumer.seeks == [(TP(SESSIONS, 0), 5)], "sought again at once"
    admitted, positions, _ = asyncio.run(keeper.admit([at(0, 5), at(0, 6)]))
    assert positions == {TP(SESSIONS, 0): 7}


def test_records_deleted_by_retention_are_skipped_with_the_next_one_processed() -> None:
    table = FakeTable({position_key(SESSIONS, 0): 5})
    offsets = FakeOffsets(start_at={(SESSIONS, 0): 20})
    keeper, app = reading([TP(SESSIONS, 0)], table, offsets)
    admitted, positions, _ = asyncio.run(keeper.admit([at(0, 20)]))
    assert [e.message.offset for e in admitted] == [20]
    assert positions == {TP(SESSIONS, 0): 21}
    assert app.consumer.seeks == []


def test_a_rebalance_starts_new_partitions_at_the_commit_and_keeps_restored_ones() -> None:
    table = FakeTable({position_key(SESSIONS, 1): 12})
    offsets = FakeOffsets(committed_at={(SESSIONS, 2): 30, (SESSIONS, 1): 40})
    keeper, _ = reading([TP(SESSIONS, 1), TP(SESSIONS, 2), TP(OTHER, 0)], table, offsets)
    keeper.durable[(SESSIONS, 0)] = 3  # given away in this rebalance
    asyncio.run(keeper.start())
    assert keeper.durable == {(SESSIONS, 1): 12, (SESSIONS, 2): 30}
    assert table[position_key(SESSIONS, 2)] == 30
    assert keeper.table.changelog == [(position_key(SESSIONS, 2), 30)]


def test_a_commit_past_the_position_is_read_again_once_per_generation() -> None:
    table = FakeTable({position_key(SESSIONS, 0): 5, position_key(SESSIONS, 1): 8})
    offsets = FakeOffsets(committed_at={(SESSIONS, 0): 9, (SESSIONS, 1): 8})
    keeper, app = reading([TP(SESSIONS, 0), TP(SESSIONS, 1)], table, offsets)
    asyncio.run(keeper.check())
    assert app.consumer.seeks == [(TP(SESSIONS, 0), 5)]
    asyncio.run(keeper.check())
    assert app.consumer.seeks == [(TP(SESSIONS, 0), 5)]
    app.consumer_generation_id = 2
    asyncio.run(keeper.check())
    assert app.consumer.seeks == [(TP(SESSIONS, 0), 5)] * 2
