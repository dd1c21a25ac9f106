"""The detector's Faust app: a thin adapter from the input topics to the rules and back.

* **routers** read ``mediacdr.liveness`` and ``mediacdr.sessions``, validate each record,
  dead-letter what cannot be applied, and forward the rest, re-keyed by node, to the internal topic
  ``<app id>-nodeevents``. The session router keeps session → node in the ``session-routes``
  table, co-partitioned with ``mediacdr.sessions``. A timer writes event-time *marks* to every
  internal partition (``services.detector.marks``).
* the **node agent** reads the internal topic — everything about a node in one ordered stream —
  and runs :class:`services.core.rules.NodeEngine`; its state lives in the ``nodes`` and
  ``node-sessions`` tables, written after the outputs are sent (see ``table_store``).

Metrics (``services.detector.metrics``) are counted where records are routed, dead-lettered and
emitted; the mark timer's completed ticks are the worker's ``/health`` heartbeat.

Every send is immediate (``force=True``): forwards must precede the marks that vouch for them,
and outputs must precede the state that records them. Faust flushes the producer before it
commits offsets, so processing is at-least-once and every output has a deterministic ``ce_id``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import faust

from services.config import DetectorSettings
from services.core.errors import RejectedInput
from services.core.rules import Emit, Input, NodeEngine, Output, RuleSettings
from services.core.validation import InputKind, ValidInput, validate_input
from services.detector import metrics
from services.detector.envelope import Envelope, envelope_from_doc, envelope_to_doc
from services.detector.marks import (
    MARK_KIND,
    PartitionProgress,
    Watermarks,
    decode_mark,
    encode_mark,
    source_key,
)
from services.detector.offsets import BrokerOffsets
from services.detector.output import Output as Record
from services.detector.output import OutputBuilder
from services.detector.routing import route_session
from services.detector.sources import raw_headers, source_of
from services.detector.table_store import TableRulesStore
from services.observability import Heartbeat, LagReporter

__all__ = [
    "INTERNAL_TOPIC_SUFFIX",
    "TABLES",
    "Detector",
    "build_app",
    "build_detector",
    "internal_topic_name",
]

INTERNAL_TOPIC_SUFFIX = "nodeevents"
TABLES = ("session-routes", "nodes", "node-sessions")
log = logging.getLogger(__name__)
MARK_INTERVAL_S = 0.05
STALL_MS = 5000
#: /health says unhealthy when the mark timer (every MARK_INTERVAL_S) has not completed a tick
#: for this long: the worker is stuck, or cannot reach the broker.
STALE_AFTER_S = 30.0


def internal_topic_name(settings: DetectorSettings) -> str:
    return f"{settings.detector_app_id}-{INTERNAL_TOPIC_SUFFIX}"


def build_app(settings: DetectorSettings) -> faust.App:
    return build_detector(settings).app


def build_detector(settings: DetectorSettings) -> Detector:
    """The Faust app with the detector wired in; ``.app`` runs it, ``.heartbeat`` says it
    still turns."""
    app = faust.App(
        settings.detector_app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        datadir=settings.detector_data_dir,
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        table_standby_replicas=settings.detector_standby_replicas,
        key_serializer="json",  # tables; topics below are raw bytes
        value_serializer="json",
    )
    detector = Detector(app, settings)
    detector.wire()
    return detector


class Detector:
    """Holds the topics, tables and in-memory progress of one worker."""

    def __init__(self, app: faust.App, settings: DetectorSettings) -> None:
        self.app = app
        self.settings = settings
        self.heartbeat = Heartbeat("marks", STALE_AFTER_S)
        self.lag = LagReporter("detector")

    def wire(self) -> None:
        app, s = self.app, self.settings
        self.builder = OutputBuilder(s)
        self.liveness = self._raw_topic(s.topic_liveness)
        self.sessions = self._raw_topic(s.topic_sessions)
        self.internal = self._raw_topic(
            internal_topic_name(s), partitions=s.partitions, internal=True
        )
        self.outputs = {
            name: self._raw_topic(name)
            for name in (s.topic_cdr, s.topic_nodes, s.topic_notifications, s.topic_deadletter)
        }
        self.routes = app.Table(
            "session-routes", default=None, partitions=s.partitions, key_type=str
        )
        nodes = app.Table("nodes", default=None, partitions=s.partitions, key_type=str)
        sessions = app.Table("node-sessions", default=None, partitions=s.partitions, key_type=str)
        self.store = TableRulesStore(nodes, sessions)
        metrics.OPEN_INCIDENTS.set_function(self.store.open_incidents)
        self.engine = NodeEngine(
            self.store,
            RuleSettings(s.grace_ms, s.heartbeat_timeout_ms, s.reconnection_timeout_s),
        )
        self.progress: dict[Any, PartitionProgress] = {}
        self.progress_generation: int | None = None
        self.watermarks: dict[int, Watermarks] = {}
        self.restored = 0  # bumped when Faust finishes restoring tables after a rebalance
        self.timers_built: dict[int, int] = {}
        app.on_rebalance_complete.connect(self._on_tables_restored)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._on_shutdown)
        app.agent(self.liveness, name="route-liveness")(self._route_agent("liveness"))
        app.agent(self.sessions, name="route-sessions")(self._route_agent("session"))
        app.agent(self.internal, name="nodes")(self._node_agent)
        app.timer(MARK_INTERVAL_S)(self._tick)
        self.offsets = BrokerOffsets(s.kafka_bootstrap, s.detector_app_id)

    def _raw_topic(self, name: str, **kwargs: Any) -> Any:
        return self.app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            **kwargs,
        )

    async def _send(self, record: Record) -> None:
        await self.outputs[record.topic].send(
            key=record.key,
            value=record.value,
            headers=record.headers,
            timestamp=(record.timestamp_ms + 0.5) / 1000.0,  # Faust takes seconds; keep the ms
            force=True,
        )

    # -- routers --------------------------------------------------------------------------

    def _route_agent(self, kind: InputKind) -> Any:
        async def route(stream: Any) -> None:
            async for event in stream.events():
                timestamp = await self._route_one(kind, event)
                self._progress(event).forwarded(event.message.offset, timestamp)

        return route

    async def _route_one(self, kind: InputKind, event: Any) -> int | None:
        """Forward one input record, or dead-letter it; returns its event time if accepted."""
        valid: ValidInput | None = None
        try:
            valid = validate_input(kind, event.key, event.value)
            node = valid.key
            if kind == "session":
                bound = self._bound_node(valid.key)
                node = route_session(valid, bound)
                self._bind(valid.event, valid.key, node, bound)
        except RejectedInput as error:
            source = source_of(event)
            await self._send(
                self.builder.dead_letter(
                    event.key,
                    event.value,
                    raw_headers(event),
                    source,
                    code=error.code,
                    detail=error.detail,
                )
            )
            metrics.received(kind, valid.event if valid is not None else None, None)
            metrics.dead_lettered(error.code)
            return None
        envelope = Envelope(
            kind, source_of(event), valid.key, event.value.decode("utf-8"), raw_headers(event)
        )
        value = json.dumps(envelope_to_doc(envelope), separators=(",", ":"), ensure_ascii=False)
        await self.internal.send(key=node.encode(), value=value.encode("utf-8"), force=True)
        metrics.received(kind, valid.event, time.time() - valid.timestamp / 1000)
        return valid.timestamp

    def _bound_node(self, session_id: str) -> str | None:
        row = self.routes.get(session_id)
        return str(row["node"]) if row else None

    def _bind(self, event: str, session_id: str, node: str, bound: str | None) -> None:
        if event == "sessionCreated" and bound != node:
            self.routes[session_id] = {"node": node}
        elif event == "sessionDestroyed" and bound is not None:
            del self.routes[session_id]

    def _progress(self, event: Any) -> PartitionProgress:
        self._reset_progress_after_rebalance()
        return self.progress.setdefault(event.message.tp, PartitionProgress())

    def _reset_progress_after_rebalance(self) -> None:
        """Forget partitions this worker no longer owns; keep what it tracked of the others
        (Faust need not re-deliver records it already handed to the agent)."""
        generation = self.app.consumer_generation_id
        if generation != self.progress_generation:
            self.progress_generation = generation
            owned = self.app.consumer.assignment()
            self.progress = {tp: p for tp, p in self.progress.items() if tp in owned}

    async def _read_again(self, tp: Any, offset: int) -> None:
        """Faust skips records fetched while its generation changes and never re-reads them
        (streams.py, generation check); seek back so they are delivered. Re-delivered records
        are harmless: the node agent skips what it applied."""
        log.warning(
            "no records from %s for %d ms while some wait; reading again from %d",
            tp,
            STALL_MS,
            offset,
        )
        await self.app.consumer.seek(tp, offset)

    async def _tick(self) -> None:
        """Faust drops a timer's exception silently; say it, and try again next tick."""
        try:
            await self._send_marks()
        except Exception:
            log.exception("sending event-time marks failed; retrying at the next tick")
        else:
            self.heartbeat.beat()

    async def _send_marks(self) -> None:
        consumer = self.app.consumer
        roles = {self.settings.topic_liveness: "liveness", self.settings.topic_sessions: "sessions"}
        owned = [tp for tp in consumer.assignment() if tp.topic in roles]
        report_lag = self.lag.due()
        if not owned:
            if report_lag:
                self.lag.set({})
            return
        self._reset_progress_after_rebalance()
        wall_ms = int(time.time() * 1000)
        ends = await self.offsets.ends((tp.topic, tp.partition) for tp in owned)
        marks: dict[str, int] = {}
        lags: dict[tuple[str, int], int] = {}
        for tp in owned:
            progress = self.progress.setdefault(tp, PartitionProgress())
            end = ends.get((tp.topic, tp.partition), 0)
            committed = 0
            if progress.next_offset < end:  # resumed from a commit, or still reading
                committed = await self.offsets.committed((tp.topic, tp.partition))
                if progress.stalled(committed, end, wall_ms, STALL_MS):
                    await self._read_again(tp, max(progress.next_offset, committed))
            mark = progress.mark(committed, end, wall_ms, self.settings.allowed_lateness_ms)
            if mark is not None:
                marks[source_key(roles[tp.topic], tp.partition)] = mark
            if report_lag:
                lags[(tp.topic, tp.partition)] = end - max(progress.next_offset, committed)
        if report_lag:
            self.lag.set(lags)
        value = encode_mark(marks)
        for partition in range(self.settings.partitions):
            await self.internal.send(value=value, partition=partition, force=True)

    # -- node agent -----------------------------------------------------------------------

    async def _node_agent(self, stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            self.store.partition = partition
            doc = json.loads(event.value)
            if doc.get("kind") == MARK_KIND:
                await self._on_mark(partition, decode_mark(doc))
                continue
            envelope = envelope_from_doc(doc)
            item = Input(
                envelope.kind,
                envelope.payload(),
                envelope.source.partition,
                envelope.source.offset,
                doc,
            )
            node_id = event.key.decode("utf-8")
            self._ensure_timers(partition)
            if envelope.kind == "liveness":
                outputs = self.engine.on_liveness(node_id, item)
            else:
                outputs = self.engine.on_session(node_id, item)
            await self._commit(outputs)

    async def _on_mark(self, partition: int, marks: dict[str, int]) -> None:
        watermarks = self.watermarks.setdefault(partition, Watermarks(self.settings.partitions))
        watermarks.update(marks)
        self._ensure_timers(partition)
        for node_id, due in sorted(self.store.timers.get(partition, {}).items()):
            watermark = watermarks.for_node(self.store.liveness_partitions.get(node_id))
            if watermark is not None and due <= watermark:
                await self._commit(self.engine.advance(node_id, watermark))

    async def _on_tables_restored(
        self, sender: Any, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        self.restored += 1
        internal = internal_topic_name(self.settings)
        owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == internal}
        self.store.keep_partitions(owned)  # the open-incident count of what this worker owns

    async def _on_shutdown(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await self.offsets.close()

    def _ensure_timers(self, partition: int) -> None:
        """The pending decisions of the nodes of ``partition``, rebuilt from the restored
        tables after every rebalance (a mark may arrive while a rebalance is under way)."""
        if self.timers_built.get(partition) != self.restored:
            self.timers_built[partition] = self.restored
            self.store.rebuild_timers(partition, self.engine.due)

    async def _commit(self, outputs: list[Output]) -> None:
        """Send the outputs, then write the state that accounts for them."""
        for output in outputs:
            if isinstance(output, Emit):
                await self._send(self.builder.emit(output))
                event = str(output.body["event"])
                metrics.emitted(output.stream, event)
                if event == "nodeCrashed" and output.stream == "cdr":
                    decided_at = int(output.body["timestamp"]) + self.settings.allowed_lateness_ms
                    metrics.crash_decided(time.time() - decided_at / 1000)
            else:
                await self._send(self.builder.rejected(output))
                metrics.dead_lettered(output.code)
        self.store.flush()
