"""The detector's Faust app: a thin adapter from the input topics to the core and back.

Two stages (CONTRACT §1, §2):

* **routers** read ``mediacdr.liveness`` and ``mediacdr.sessions``, validate each record
  (``services.core.validation``), dead-letter what cannot be applied, and re-key what can by media
  node onto the internal topic ``mediacdr-nodeevents``. The session router keeps the session → node
  binding in a table co-partitioned with ``mediacdr.sessions``.
* the **node agent** reads the internal topic, so everything about one node arrives in one
  ordered stream, and writes the CDR copies.

Outputs are sent as Faust attachments: they reach Kafka before the input offset is committed,
so processing is at-least-once and every output has a deterministic ``ce_id``.
"""

from __future__ import annotations

from typing import Any

import faust

from services.config import DetectorSettings
from services.core.errors import RejectedInput
from services.core.validation import InputKind, validate_input
from services.detector.envelope import Envelope, decode_envelope, encode_envelope
from services.detector.output import Output, OutputBuilder
from services.detector.routing import route_from_row, route_session, route_to_row
from services.detector.sources import raw_headers, source_of

__all__ = ["INTERNAL_TOPIC_SUFFIX", "build_app"]

INTERNAL_TOPIC_SUFFIX = "nodeevents"


def build_app(settings: DetectorSettings) -> faust.App:
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
        key_serializer="json",  # tables; topics below are raw bytes
        value_serializer="json",
    )
    _wire(app, settings)
    return app


def _raw_topic(app: faust.App, name: str, **kwargs: Any) -> Any:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        **kwargs,
    )


def _wire(app: faust.App, settings: DetectorSettings) -> None:
    builder = OutputBuilder(settings)
    liveness = _raw_topic(app, settings.topic_liveness)
    sessions = _raw_topic(app, settings.topic_sessions)
    internal = _raw_topic(
        app,
        f"{settings.detector_app_id}-{INTERNAL_TOPIC_SUFFIX}",
        partitions=settings.partitions,
        internal=True,
    )
    outputs = {
        name: _raw_topic(app, name)
        for name in (
            settings.topic_cdr,
            settings.topic_nodes,
            settings.topic_notifications,
            settings.topic_deadletter,
        )
    }
    routes = app.Table(
        "session-routes",
        default=None,
        partitions=settings.partitions,
        key_type=str,
    )

    async def send(output: Output) -> None:
        await outputs[output.topic].send(
            key=output.key,
            value=output.value,
            headers=output.headers,
            timestamp=(output.timestamp_ms + 0.5) / 1000.0,  # Faust takes seconds; keep the ms
        )

    async def forward(envelope: Envelope, node: str) -> None:
        await internal.send(key=node.encode(), value=encode_envelope(envelope))

    async def reject(event: Any, error: RejectedInput) -> None:
        await send(
            builder.dead_letter(event.key, event.value, raw_headers(event), source_of(event), error)
        )

    async def route(kind: InputKind, event: Any) -> None:
        valid = validate_input(kind, event.key, event.value)
        usid: str | None = None
        node = valid.key
        if kind == "session":
            decision = route_session(valid, route_from_row(routes.get(valid.key)))
            if decision.changed:
                routes[valid.key] = route_to_row(decision.route)
            node, usid = decision.route.node, decision.route.unique_session_id
        envelope = Envelope(
            kind=kind,
            source=source_of(event),
            key=valid.key,
            raw=event.value.decode("utf-8"),
            headers=raw_headers(event),
            unique_session_id=usid,
        )
        await forward(envelope, node)

    @app.agent(liveness, name="route-liveness")
    async def route_liveness(stream: Any) -> None:
        async for event in stream.events():
            try:
                await route("liveness", event)
            except RejectedInput as error:
                await reject(event, error)

    @app.agent(sessions, name="route-sessions")
    async def route_sessions(stream: Any) -> None:
        async for event in stream.events():
            try:
                await route("session", event)
            except RejectedInput as error:
                await reject(event, error)

    @app.agent(internal, name="nodes")
    async def node_agent(stream: Any) -> None:
        async for event in stream.events():
            envelope = decode_envelope(event.value)
            node = event.key.decode()
            for output in builder.copies(envelope, node):
                await send(output)

    _ = (route_liveness, route_sessions, node_agent)
