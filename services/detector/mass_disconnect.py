"""The mass-disconnection watch over a detector of N workers (docs/DETECTOR.md).

No worker sees the whole cluster: each owns the nodes of its partitions. So the facts are
gathered, the Kafka way, on one single-partition internal topic, ``<app id>-massdisconnect``,
whose one consumer (one worker of the group) holds the cluster-wide view:

* the agent ``mass-disconnect-feed`` reads ``mediacdr.nodes`` (each worker its partitions) and
  forwards every ``incidentOpened`` as ``{"kind": "disconnected", "node": …, "at": …}``; a record
  it cannot read goes to the dead-letter topic with its reason;
* a timer on every worker sends, once a second, how many nodes run on each node partition it
  owns (``{"kind": "running", "counts": {"<partition>": n, …}}``), counted in the ``nodes``
  table — the rules' own state, so planned shutdowns, crashes and removals count as they should
  (and sets the gauge ``mediacdr_running_nodes`` to their sum);
* the agent ``mass-disconnect`` reads the single partition into
  :class:`~services.core.rules.mass_disconnect.MassDisconnectWatch` and, when it finds a mass
  disconnection, writes the ``massDisconnect`` node fact (key ``*``), counts it
  (``mediacdr_mass_disconnects_total``) and logs a warning. Crash decisions are unchanged.

The watch's window lives in memory on the worker that owns the single partition: a rebalance that
moves it in the middle of a burst can miss that burst (docs/DETECTOR.md, known issues).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import faust

from services.config import DetectorSettings
from services.core.codec import ce_time
from services.core.errors import RejectedInput
from services.core.events import MassDisconnect, event_to_wire
from services.core.rules.mass_disconnect import (
    Disconnection,
    MassDisconnectPolicy,
    MassDisconnectWatch,
    disconnection_of,
    running_counts,
    share_of,
)
from services.core.rules.outputs import Emit
from services.detector import metrics
from services.detector.output import Output, OutputBuilder
from services.detector.sources import dead_letter_of, raw_topic
from services.topics import TopicSpec

__all__ = [
    "ALL_NODES_KEY",
    "MassDisconnectWiring",
    "mass_disconnect_topic_name",
    "mass_disconnect_topics",
    "wire_mass_disconnect",
]

log = logging.getLogger(__name__)
TOPIC_SUFFIX = "massdisconnect"
#: The record key of a massDisconnect fact: it is about the cluster, not one node.
ALL_NODES_KEY = "*"
REPORT_INTERVAL_S = 1.0
#: The single-partition topic only carries what the last grace window needs.
_RETENTION = {"retention.ms": str(3_600_000)}


def mass_disconnect_topic_name(settings: DetectorSettings) -> str:
    return f"{settings.detector_app_id}-{TOPIC_SUFFIX}"


def mass_disconnect_topics(settings: DetectorSettings) -> list[TopicSpec]:
    """Created before Faust starts, like the detector's other internal topics."""
    return [TopicSpec(mass_disconnect_topic_name(settings), 1, dict(_RETENTION))]


def wire_mass_disconnect(
    app: faust.App,
    settings: DetectorSettings,
    *,
    nodes: Mapping[str, Any],
    node_topic: str,
) -> MassDisconnectWiring:
    """Add the watch to the detector's app: ``nodes`` is the rules' ``nodes`` table and
    ``node_topic`` the internal topic it is partitioned like (``<app id>-nodeevents``)."""
    wiring = MassDisconnectWiring(app, settings, nodes, node_topic)
    wiring.wire()
    return wiring


class MassDisconnectWiring:
    def __init__(
        self,
        app: faust.App,
        settings: DetectorSettings,
        nodes: Mapping[str, Any],
        node_topic: str,
    ) -> None:
        self.app = app
        self.settings = settings
        self.nodes = nodes
        self.node_topic = node_topic

    def wire(self) -> None:
        app, s = self.app, self.settings
        self.builder = OutputBuilder(s)
        policy = MassDisconnectPolicy(
            share=s.mass_disconnect_share,
            min_running=s.mass_disconnect_min_nodes,
            window_ms=s.grace_ms,
        )
        self.watch = MassDisconnectWatch(policy, s.partitions)
        self.ready_generation: int | None = None
        self.facts = raw_topic(self.app, s.topic_nodes)
        self.deadletter = raw_topic(self.app, s.topic_deadletter)
        self.gathered = raw_topic(
            self.app, mass_disconnect_topic_name(s), partitions=1, internal=True
        )
        app.on_rebalance_complete.connect(self._on_tables_restored)  # type: ignore[arg-type]
        app.agent(self.facts, name="mass-disconnect-feed")(self._feed)
        app.agent(self.gathered, name="mass-disconnect")(self._judge)
        app.timer(REPORT_INTERVAL_S)(self._report)

    async def _gather(self, doc: dict[str, Any]) -> None:
        value = json.dumps(doc, separators=(",", ":")).encode()
        await self.gathered.send(value=value, partition=0, force=True)

    # -- every worker -----------------------------------------------------------------------

    async def _feed(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                found = disconnection_of(event.value)
            except RejectedInput as error:
                await self._dead_letter(event, error)
                continue
            if found is not None:
                await self._gather({"kind": "disconnected", "node": found.node_id, "at": found.at})

    async def _dead_letter(self, event: Any, error: RejectedInput) -> None:
        await self._send(dead_letter_of(self.builder, event, error))
        metrics.dead_lettered(error.code)

    async def _on_tables_restored(
        self, sender: Any, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        self.ready_generation = self.app.consumer_generation_id

    async def _report(self) -> None:
        """Faust drops a timer's exception silently; say it, and try again next tick."""
        try:
            await self._report_running()
        except Exception:
            log.exception("reporting the running nodes failed; retrying at the next tick")

    async def _report_running(self) -> None:
        """The running nodes of the node partitions this worker owns, once its tables are
        restored (a count taken during recovery would be too low)."""
        app = self.app
        if app.rebalancing or app.consumer_generation_id != self.ready_generation:
            return
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == self.node_topic}
        counts = running_counts(list(self.nodes.values()), owned)
        if counts:
            report = {str(p): n for p, n in counts.items()}
            await self._gather({"kind": "running", "counts": report})
        metrics.RUNNING_NODES.set(sum(counts.values()))

    # -- the one worker that owns the single partition -------------------------------------

    async def _judge(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                found = self._apply(json.loads(event.value))
            except (ValueError, KeyError, TypeError, AttributeError) as e:  # only we write it
                log.error("skipped an unreadable record of %s: %r", self.gathered, e)
                continue
            for mass in found:
                await self._announce(mass)

    def _apply(self, doc: dict[str, Any]) -> list[MassDisconnect]:
        if doc["kind"] == "running":
            counts = {int(p): int(n) for p, n in doc["counts"].items()}
            return self.watch.running_reported(counts)
        d = Disconnection(str(doc["node"]), int(doc["at"]))
        return self.watch.disconnected(d, int(time.time() * 1000))

    async def _announce(self, mass: MassDisconnect) -> None:
        body = event_to_wire(mass)
        await self._send(self.builder.emit(Emit("nodes", ALL_NODES_KEY, body, None)))
        metrics.emitted("nodes", mass.name)
        metrics.MASS_DISCONNECTS.inc()
        log.warning(
            "mass disconnection: %d of %d running media nodes (%.0f %%, more than %.0f %%) "
            "disconnected within %d ms, from %s to %s; the likely fault is the observer or the "
            "network, not the nodes (crash decisions are unchanged): %s",
            len(mass.node_ids),
            mass.running_nodes,
            share_of(mass) * 100,
            mass.threshold * 100,
            mass.window_ms,
            ce_time(mass.window_start),
            ce_time(mass.timestamp),
            ", ".join(mass.node_ids),
        )

    async def _send(self, record: Output) -> None:
        topic = self.facts if record.topic == self.settings.topic_nodes else self.deadletter
        await topic.send(
            key=record.key,
            value=record.value,
            headers=record.headers,
            timestamp=(record.timestamp_ms + 0.5) / 1000.0,
            force=True,
        )
