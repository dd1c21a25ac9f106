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

Routers and the node agent work in batches: a router takes up to ``ROUTE_BATCH_MAX`` input
records (waiting at most ``ROUTE_BATCH_WITHIN_S``) and forwards them as one internal record per
internal partition; the node agent applies several internal records, sends every output, waits
for the broker to acknowledge them, and only then writes the state that accounts for them. Forwards
are sent before the router's progress moves, so they precede the marks that vouch for them on
every internal partition. Faust flushes the producer before it commits offsets, so processing is
at-least-once and every output has a deterministic ``ce_id``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any

import faust

from services.config import DetectorSettings
from services.core.errors import RejectedInput
from services.core.rules import Emit, Input, NodeEngine, Output, RuleSettings
from services.core.validation import InputKind, ValidInput, validate_input
from services.detector import metrics
from services.detector.envelope import Envelope, decode_batch, encode_batch
from services.detector.fetching import DetectorApp
from services.detector.marks import (
    MARK_KIND,
    OutageGuard,
    PartitionProgress,
    Watermarks,
    decode_mark,
    encode_mark,
    source_key,
)
from services.detector.mass_disconnect import wire_mass_disconnect
from services.detector.offsets import BrokerOffsets
from services.detector.output import Output as Record
from services.detector.output import OutputBuilder
from services.detector.reading import ReadPositions
from services.detector.routing import (
    bind,
    node_partition,
    prunable,
    route_session,
)
from services.detector.sources import dead_letter_of, raw_headers, raw_topic, source_of
from services.detector.table_store import DELETED, TableRulesStore, write_durably
from services.kafka_clients import faust_options
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
TABLES = ("session-routes", "nodes", "node-sessions", "read-positions")
log = logging.getLogger(__name__)
MARK_INTERVAL_S = 0.05
#: a router forwards up to this many input records at once …
ROUTE_BATCH_MAX = 1000
#: … and waits at most this long for them (the latency a quiet cluster's events pay)
ROUTE_BATCH_WITHIN_S = 0.005
#: the node agent applies up to this many internal records (batches and marks) at once, then
#: sends their outputs and writes their state with one wait for the broker …
NODE_BATCH_MAX = 200
#: … gathering them for at most this long
NODE_BATCH_WITHIN_S = 0.002
#: how often ended session routes are checked against the committed offsets
PRUNE_INTERVAL_S = 10.0
#: an end-offset request that takes this long (or fails) = the broker was unreachable
OUTAGE_GAP_S = 2.0
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
    app = DetectorApp(
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
        broker_session_timeout=settings.detector_session_timeout_s,
        broker_heartbeat_interval=settings.detector_heartbeat_interval_s,
        key_serializer="json",  # tables; topics below are raw bytes
        value_serializer="json",
        **faust_options(settings),
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
        self.liveness = raw_topic(self.app, s.topic_liveness)
        self.sessions = raw_topic(self.app, s.topic_sessions)
        self.internal = raw_topic(
            self.app, internal_topic_name(s), partitions=s.partitions, internal=True
        )
        self.outputs = {
            name: raw_topic(self.app, name)
            for name in (s.topic_cdr, s.topic_nodes, s.topic_notifications, s.topic_deadletter)
        }
        self.routes = app.Table(
            "session-routes", default=None, partitions=s.partitions, key_type=str
        )
        nodes = app.Table("nodes", default=None, partitions=s.partitions, key_type=str)
        sessions = app.Table("node-sessions", default=None, partitions=s.partitions, key_type=str)
        self.internal_name = internal_topic_name(s)
        self.offsets = BrokerOffsets(s, s.detector_app_id)
        read = {s.topic_liveness, s.topic_sessions, self.internal_name}
        #: per partition read, the next offset to process (``services.detector.positions``)
        self.reading = ReadPositions(
            app,
            app.Table("read-positions", default=None, partitions=s.partitions, key_type=str),
            self.offsets,
            lambda: read,
        )
        self.store = TableRulesStore(nodes, sessions, write_durably)
        metrics.OPEN_INCIDENTS.set_function(self.store.open_incidents)
        metrics.TABLE_RECOVERY.set_function(  # read from the metrics thread: create nothing
            lambda: metrics.recovering_for(getattr(app.tables, "_recovery", None), time.monotonic())
        )
        self.engine = NodeEngine(
            self.store,
            RuleSettings(s.grace_ms, s.heartbeat_timeout_ms, s.reconnection_timeout_s),
        )
        self.progress: dict[Any, PartitionProgress] = {}
        self.progress_generation: int | None = None
        self.watermarks: dict[int, Watermarks] = {}
        self.restored = 0  # bumped when Faust finishes restoring tables after a rebalance
        #: sessions partition → ids of its ended ``session-routes`` rows, pruned by the tick
        self.ended_routes: dict[int, list[str]] = {}
        self.pruned_at = 0.0
        self.outage = OutageGuard(OUTAGE_GAP_S, self.settings.outage_settle_ms / 1000)
        self.timers_built: dict[int, int] = {}
        app.on_rebalance_complete.connect(self._on_tables_restored)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._on_shutdown)
        app.agent(self.liveness, name="route-liveness")(self._route_agent("liveness"))
        app.agent(self.sessions, name="route-sessions")(self._route_agent("session"))
        app.agent(self.internal, name="nodes")(self._node_agent)
        app.timer(MARK_INTERVAL_S)(self._tick)
        wire_mass_disconnect(app, s, nodes=nodes, node_topic=internal_topic_name(s))

    def _send(self, record: Record) -> Awaitable[Any]:
        """Hand one record to the producer; the result resolves when the broker has it."""
        return self._produce(
            record.topic,
            record.key,
            record.value,
            None,
            (record.timestamp_ms + 0.5) / 1000.0,  # Faust takes seconds; keep the ms
            record.headers,
        )

    async def _send_all(self, records: list[Record]) -> None:
        """Send records in order, then wait until the broker acknowledged all of them. (Filling
        aiokafka record batches directly was tried: ``send_batch`` waits until the partition's
        previous batch has gone out, which serialised the partitions — B1 under load went from
        0.3 s to 12 s — so each record goes through ``send``.)"""
        acks = [await self._send(record) for record in records]
        if acks:
            await asyncio.gather(*acks)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Awaitable[Any]:
        # Faust's producer, not Topic.send: no per-record Message/callback machinery, and the
        # producer is still the one Faust flushes before it commits offsets.
        return self.app.producer.send(topic, key, value, partition, timestamp, headers)

    # -- routers --------------------------------------------------------------------------

    def _route_agent(self, kind: InputKind) -> Any:
        async def route(stream: Any) -> None:
            async for events in stream.take_events(ROUTE_BATCH_MAX, within=ROUTE_BATCH_WITHIN_S):
                await self._route_batch(kind, events)

        return route

    async def _route_batch(self, kind: InputKind, events: list[Any]) -> None:
        """Forward a batch of input records — one internal record per internal partition —
        and dead-letter what cannot be applied; then move the progress the marks report."""
        events, positions, replays = await self.reading.admit(events)
        for event in replays:  # forwarded before: the partition's progress may count them
            self._progress(event).forwarded(event.message.offset, None)
        forwards: dict[int, list[Envelope]] = {}
        dead_letters: list[Record] = []
        written: list[Any] = []
        accepted: list[tuple[Any, int | None]] = []
        for event in events:
            routed = self._route_one(kind, event, dead_letters, written)
            if routed is None:
                accepted.append((event, None))
                continue
            envelope, timestamp = routed
            partition = node_partition(envelope.node, self.settings.partitions)
            forwards.setdefault(partition, []).append(envelope)
            accepted.append((event, timestamp))
        acks = written + [await self._send(record) for record in dead_letters]
        internal = self.internal.get_topic_name()
        for partition, envelopes in forwards.items():
            value = encode_batch(envelopes)
            acks.append(await self._produce(internal, None, value, partition, None, None))
        if acks:
            await asyncio.gather(*acks)
        await self.reading.advance(positions)
        for event, event_time in accepted:
            self._progress(event).forwarded(event.message.offset, event_time)

    def _route_one(
        self, kind: InputKind, event: Any, dead_letters: list[Record], written: list[Any]
    ) -> tuple[Envelope, int] | None:
        """The envelope of one accepted input record and its event time; or its dead letter.
        Route changes are written to the table at once; ``written`` gets their changelog acks."""
        valid: ValidInput | None = None
        try:
            valid = validate_input(kind, event.key, event.value)
            node = valid.key
            if kind == "session":
                route = self.routes.get(valid.key)
                offset = event.message.offset
                node = route_session(valid, route, offset)
                changed = bind(valid.event, node, route, event.message.partition, offset)
                if changed is not None:
                    partition = event.message.partition
                    written.append(write_durably(self.routes, valid.key, changed, partition))
                    if "ended" in changed:
                        self.ended_routes.setdefault(event.message.partition, []).append(valid.key)
        except RejectedInput as error:
            dead_letters.append(dead_letter_of(self.builder, event, error))
            metrics.received(kind, valid.event if valid is not None else None, None)
            metrics.dead_lettered(error.code)
            return None
        envelope = Envelope(
            kind, source_of(event), valid.key, event.value.decode("utf-8"), raw_headers(event), node
        )
        metrics.received(kind, valid.event, time.time() - valid.timestamp / 1000)
        return envelope, valid.timestamp

    def _progress(self, event: Any) -> PartitionProgress:
        self._reset_progress_after_rebalance()
        return self.progress.setdefault(event.message.tp, PartitionProgress())

    def _reset_progress_after_rebalance(self) -> None:
        """Forget partitions this worker no longer owns; keep what it tracked of the others
        (Faust need not re-deliver records it already handed to the agent)."""
        generation = self.app.consumer_generation_id
        if generation != self.progress_generation:
            self.progress_generation = generation
            self.outage.reassigned(time.monotonic())
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
            await self.reading.check()
            await self._send_marks()
            if time.monotonic() - self.pruned_at >= PRUNE_INTERVAL_S:
                self.pruned_at = time.monotonic()
                await self._prune_ended_routes()
        except Exception:
            log.exception("sending event-time marks failed; retrying at the next tick")
        else:
            self.heartbeat.beat()

    def _trust_wall_clock(self, asked_at: float, now: float) -> bool:
        gap = self.outage.answered(asked_at, now)
        if gap is not None:
            log.warning(
                "no end offsets from the broker for %.1f s: marks follow event time only for "
                "the next %d ms, while producers deliver what they held",
                gap,
                self.settings.outage_settle_ms,
            )
        return self.outage.trust_wall_clock(now)

    async def _prune_ended_routes(self) -> None:
        """Remove the ended session routes no replay can need any more (``routing.prunable``)."""
        owned = {
            tp.partition
            for tp in self.app.consumer.assignment()
            if tp.topic == self.settings.topic_sessions
        }
        for partition in list(self.ended_routes):
            if partition not in owned:
                del self.ended_routes[partition]
                continue
            position = self.reading.durable.get((self.settings.topic_sessions, partition))
            if position is None:
                continue
            kept, removed = [], []
            for session_id in self.ended_routes[partition]:
                route = self.routes.get(session_id)
                if prunable(route, partition, position):
                    removed.append(write_durably(self.routes, session_id, DELETED, partition))
                elif route is not None and "ended" in route:
                    kept.append(session_id)
            self.ended_routes[partition] = kept
            await asyncio.gather(*removed)

    async def _send_marks(self) -> None:
        consumer = self.app.consumer
        roles = {self.settings.topic_liveness: "liveness", self.settings.topic_sessions: "sessions"}
        owned = [tp for tp in consumer.assignment() if tp.topic in roles]
        report_lag = self.lag.due()
        self._reset_progress_after_rebalance()
        wall_ms = int(time.time() * 1000)
        asked_at = time.monotonic()
        # Asked even when this worker owns nothing (e.g. while an outage holds up its group):
        # the answer, or its absence, is how the outage guard sees the broker.
        asked = [(tp.topic, tp.partition) for tp in owned] or [(self.settings.topic_liveness, 0)]
        try:
            ends = await self.offsets.ends(asked)
        except Exception:
            self.outage.failed(asked_at)
            raise
        trust_wall_clock = self._trust_wall_clock(asked_at, time.monotonic())
        if not owned:
            if report_lag:
                self.lag.set({})
            return
        marks: dict[str, int] = {}
        lags: dict[tuple[str, int], int] = {}
        for tp in owned:
            progress = self.progress.setdefault(tp, PartitionProgress())
            end = ends.get((tp.topic, tp.partition), 0)
            resumed = 0
            if progress.next_offset < end:  # resumed from a read position, or still reading
                resumed = await self.reading.resumed_at(tp)
                if progress.stalled(resumed, end, wall_ms, STALL_MS):
                    await self._read_again(tp, max(progress.next_offset, resumed))
            mark = progress.mark(
                resumed, end, wall_ms, self.settings.allowed_lateness_ms, trust_wall_clock
            )
            if mark is not None:
                marks[source_key(roles[tp.topic], tp.partition)] = mark
            if report_lag:
                lags[(tp.topic, tp.partition)] = end - max(progress.next_offset, resumed)
        if report_lag:
            self.lag.set(lags)
        value = encode_mark(marks)
        topic = self.internal.get_topic_name()
        for partition in range(self.settings.partitions):
            await self._produce(topic, None, value, partition, None, None)

    # -- node agent -----------------------------------------------------------------------

    async def _node_agent(self, stream: Any) -> None:
        async for events in stream.take_events(NODE_BATCH_MAX, within=NODE_BATCH_WITHIN_S):
            events, positions, _replays = await self.reading.admit(events)
            outputs: list[Output] = []
            for event in events:
                outputs += self._apply(event)
            await self._commit(outputs)
            await self.reading.advance(positions)

    def _apply(self, event: Any) -> list[Output]:
        """The outputs of one internal record: a mark, or a batch of routed inputs."""
        partition = event.message.partition
        self.store.partition = partition
        doc = json.loads(event.value)
        if doc.get("kind") == MARK_KIND:
            return self._on_mark(partition, decode_mark(doc))
        self._ensure_timers(partition)
        watermarks = self.watermarks.setdefault(partition, Watermarks(self.settings.partitions))
        outputs: list[Output] = []
        for envelope, ref in decode_batch(doc, event.key):
            item = Input(
                envelope.kind,
                envelope.payload(),
                envelope.source.partition,
                envelope.source.offset,
                ref,
            )
            if envelope.kind == "liveness":
                outputs += self.engine.on_liveness(envelope.node, item)
            else:
                # Session input waits while the node's liveness is read more than a grace
                # window behind it (R8 across partitions, D4 in RELIABILITY.md).
                until = watermarks.liveness_until(self.store.liveness_partitions.get(envelope.node))
                outputs += self.engine.on_session(envelope.node, item, until)
        return outputs

    def _on_mark(self, partition: int, marks: dict[str, int]) -> list[Output]:
        watermarks = self.watermarks.setdefault(partition, Watermarks(self.settings.partitions))
        watermarks.update(marks)
        self._ensure_timers(partition)
        outputs: list[Output] = []
        for node_id, due in sorted(self.store.timers.get(partition, {}).items()):
            watermark = watermarks.for_node(self.store.liveness_partitions.get(node_id))
            if watermark is not None and due <= watermark:
                outputs += self.engine.advance(node_id, watermark)
        return outputs

    async def _on_tables_restored(
        self, sender: Any, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        self.restored += 1
        internal = internal_topic_name(self.settings)
        owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == internal}
        self.store.keep_partitions(owned)  # the open-incident count of what this worker owns
        sessions = {
            tp.partition
            for tp in self.app.consumer.assignment()
            if tp.topic == self.settings.topic_sessions
        }
        self.ended_routes = {}
        for session_id, route in list(self.routes.items()):
            if route and "ended" in route and route.get("p") in sessions:
                self.ended_routes.setdefault(int(route["p"]), []).append(session_id)
        await self.reading.start()

    async def _on_shutdown(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await self.offsets.close()

    def _ensure_timers(self, partition: int) -> None:
        """The pending decisions of the nodes of ``partition``, rebuilt from the restored
        tables after every rebalance (a mark may arrive while a rebalance is under way)."""
        if self.timers_built.get(partition) != self.restored:
            self.timers_built[partition] = self.restored
            self.store.rebuild_timers(partition, self.engine.due)

    async def _commit(self, outputs: list[Output]) -> None:
        """Send the outputs, wait until the broker has them, then write the state that
        accounts for them: a kill -9 can lose state whose records were sent (and the replay
        sends them again, with the same ``ce_id``), never the other way round."""
        records: list[Record] = []
        for output in outputs:
            if isinstance(output, Emit):
                records.append(self.builder.emit(output))
                event = str(output.body["event"])
                metrics.emitted(output.stream, event)
                if event == "nodeCrashed" and output.stream == "cdr":
                    decided_at = int(output.body["timestamp"]) + self.settings.allowed_lateness_ms
                    metrics.crash_decided(time.time() - decided_at / 1000)
            else:
                records.append(self.builder.rejected(output))
                metrics.dead_lettered(output.code)
        await self._send_all(records)
        await self.store.flush()
