"""One batch of Kafka records → one store transaction (rows and consumed positions together)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord, TopicPartition

from services.config import Topics
from services.core.projection import ProjectedRecord, Skipped, parse_record
from services.core.projection.records import Source
from services.projector import metrics
from services.store.projection import Position, ProjectionStore

__all__ = ["BatchReport", "ParsedBatch", "Projector"]

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    read: int = 0
    events: int = 0  # CDR events new to the store
    duplicates: int = 0
    facts: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, other: BatchReport) -> None:
        self.read += other.read
        self.events += other.events
        self.duplicates += other.duplicates
        self.facts += other.facts
        self.skipped.update(other.skipped)


@dataclass
class ParsedBatch:
    """A batch read and parsed, not yet written."""

    records: list[ProjectedRecord] = field(default_factory=list)
    positions: dict[Position, int] = field(default_factory=dict)
    report: BatchReport = field(default_factory=BatchReport)


class Projector:
    """Parses records of the CDR and node-facts topics and applies them in one transaction."""

    def __init__(self, topics: Topics, store: ProjectionStore) -> None:
        self.store = store
        self._sources: dict[str, Source] = {topics.topic_cdr: "cdr", topics.topic_nodes: "nodes"}

    @property
    def topics(self) -> list[str]:
        return list(self._sources)

    def project(
        self, batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
    ) -> BatchReport:
        """Apply ``batch``; records it cannot use advance the position and are counted."""
        return self.apply(self.parse(batch))

    def parse(
        self, batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
    ) -> ParsedBatch:
        """The first half of ``project``, no I/O: a caller may parse the next batch while the
        previous one is being written (``rebuild`` does)."""
        parsed = ParsedBatch()
        for tp, consumed in batch.items():
            if not consumed:
                continue
            source = self._sources[tp.topic]
            for m in consumed:
                record = parse_record(
                    source,
                    tp.topic,
                    tp.partition,
                    m.offset,
                    m.value,
                    m.headers,
                )
                if isinstance(record, Skipped):
                    parsed.report.skipped[record.reason] += 1
                    log.warning(
                        "skipped %s[%d]@%d: %s (%s)",
                        tp.topic,
                        tp.partition,
                        m.offset,
                        record.reason,
                        record.detail,
                    )
                else:
                    parsed.records.append(record)
            parsed.positions[(tp.topic, tp.partition)] = consumed[-1].offset + 1
            parsed.report.read += len(consumed)
        return parsed

    def apply(self, parsed: ParsedBatch) -> BatchReport:
        """The second half of ``project``: one store transaction."""
        report = parsed.report
        with metrics.BATCH_SECONDS.time():
            applied = self.store.apply(parsed.records, parsed.positions)
        report.events, report.duplicates, report.facts = (
            applied.events,
            applied.duplicates,
            applied.facts,
        )
        metrics.record(report)
        return report
