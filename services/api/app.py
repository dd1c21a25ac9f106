"""The FastAPI application of `mediacdr api` (CONTRACT §14)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from services.api.auth import USER, authorized
from services.api.ingest import Accepted, Counted, Refused, check_liveness, check_openvidu
from services.config import ApiSettings
from services.core.events import CDR_EVENTS
from services.core.webhooks import new_secret
from services.kafka_clients import new_producer
from services.store import queries
from services.store.webhooks import UnknownSubscription, WebhookStore
from services.webhooks.urls import InvalidWebhookUrl, checked_url

__all__ = ["create_app"]

log = logging.getLogger(__name__)

INGESTED = Counter(
    "mediacdr_ingest_events",
    "Ingest requests by endpoint and outcome (published, counted, refused, unavailable).",
    ["endpoint", "outcome"],
)
INGEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
}


class Publisher:
    """A Kafka producer started on first use; ``None`` while Kafka is unreachable."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def send(self, role: str, key: bytes, value: bytes) -> None:
        """Publish and wait for the acknowledgement; raises ``KafkaError`` or ``OSError``."""
        producer = await self._started()
        topic = getattr(self.settings, f"topic_{role}")
        await producer.send_and_wait(topic, value, key=key)

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = new_producer(
                    self.settings,
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=5000,
                )
                try:
                    await asyncio.wait_for(producer.start(), timeout=10)
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class NewSubscription(BaseModel):
    url: str = Field(pattern=r"^https?://\S+$", max_length=2048)
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    events: list[str] | None = None
    headers: list[str] = Field(default_factory=list)
    secret: bool = True


class Replay(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    event_id: str | None = Field(default=None, max_length=255)


def create_app(settings: ApiSettings, engine: Engine) -> FastAPI:
    publisher = Publisher(settings)
    webhooks = WebhookStore(engine)
    api_secret = settings.api_secret.get_secret_value() if settings.api_secret else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await publisher.stop()

    app = FastAPI(
        title="mediacdr",
        version="1",
        summary="Crash detection and OpenVidu-compatible CDR for media-server clusters",
        lifespan=lifespan,
    )

    async def require_auth(request: Request) -> None:
        if not authorized(api_secret, request.headers.get("authorization")):
            raise HTTPException(
                401,
                "Authorization: Bearer <MEDIACDR_API_SECRET> or Basic mediacdr:<secret> needed",
                headers={"WWW-Authenticate": f'Basic realm="{USER}"'},
            )

    api = APIRouter(prefix="/api", dependencies=[Depends(require_auth)])

    # -- monitoring --------------------------------------------------------------------------

    @app.get("/health", tags=["monitoring"])
    def health() -> JSONResponse:
        """200 when the database answers; the dashboard and probes use it."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:  # any database failure is "unhealthy", with the reason
            return JSONResponse({"status": "unhealthy", "database": str(e)[:200]}, 503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @app.get("/metrics", tags=["monitoring"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics of the api (ingest counters, process)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/",
        response_class=HTMLResponse,
        include_in_schema=False,
        dependencies=[Depends(require_auth)],
    )
    async def dashboard() -> HTMLResponse:
        page = files("services.api").joinpath("dashboard.html").read_text()
        return HTMLResponse(page)

    # -- queries -------------------------------------------------------------------------------

    @api.get("/nodes", tags=["queries"])
    def list_nodes() -> list[dict[str, Any]]:
        """Every media node with its state and live sessions."""
        return queries.nodes(engine)

    @api.get("/nodes/{node_id}", tags=["queries"])
    def get_node(node_id: str) -> dict[str, Any]:
        """One node, its live sessions and latest incidents."""
        found = queries.node(engine, node_id)
        if found is None:
            raise HTTPException(404, f"no media node {node_id!r}")
        return found

    @api.get("/sessions", tags=["queries"])
    def list_sessions(
        active: bool | None = None,
        node: Annotated[str | None, Query(max_length=255)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Sessions, newest first; ``since``/``until`` bound their creation time."""
        return queries.sessions(
            engine, active=active, node=node, since=_aware(since), until=_aware(until), limit=limit
        )

    @api.get("/incidents", tags=["queries"])
    def list_incidents(
        node: Annotated[str | None, Query(max_length=255)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Disconnections (blips, crashes, in grace), latest first, with their impact."""
        return queries.incidents(engine, node=node, limit=limit)

    @api.get("/cdr", tags=["queries"])
    def list_cdr(
        event: Annotated[str | None, Query(max_length=64)] = None,
        session: Annotated[str | None, Query(max_length=255)] = None,
        node: Annotated[str | None, Query(max_length=255)] = None,
        reason: Annotated[str | None, Query(max_length=64)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """CDR events in CDR order; pass ``next_cursor`` back as ``cursor`` for the next page."""
        after = _decode_cursor(cursor) if cursor else None
        rows = queries.cdr(
            engine,
            event=event,
            session=session,
            node=node,
            reason=reason,
            since=_aware(since),
            until=_aware(until),
            after=after,
            limit=limit,
        )
        items = [
            {
                "event_id": r["event_id"],
                "event": r["event"],
                "timestamp": r["timestamp_ms"],
                "media_node_id": r["media_node_id"],
                "incident_id": r["incident_id"],
                "payload": r["payload"],
            }
            for r in rows
        ]
        last = rows[-1] if len(rows) == limit else None
        next_cursor = (
            _encode_cursor((last["timestamp_ms"], last["source_partition"], last["source_offset"]))
            if last
            else None
        )
        return {"items": items, "next_cursor": next_cursor}

    @api.get("/dashboard", tags=["queries"])
    def dashboard_state() -> dict[str, Any]:
        """Everything the dashboard shows, in one call."""
        return _dashboard(engine, webhooks)

    # -- webhooks ------------------------------------------------------------------------------

    @api.get("/webhooks", tags=["webhooks"])
    def list_webhooks() -> list[dict[str, Any]]:
        """Subscriptions with their delivery counts; secrets are never returned."""
        counts = webhooks.counts()
        return [_public(s, counts.get(s.id, {})) for s in webhooks.subscriptions()]

    @api.post("/webhooks", tags=["webhooks"], status_code=201)
    def add_webhook(new: NewSubscription) -> dict[str, Any]:
        """Subscribe a URL; the answer holds its secret, shown this once."""
        try:
            checked_url(new.url, allow_private=settings.webhook_allow_private)
        except InvalidWebhookUrl as e:
            raise HTTPException(400, str(e)) from e
        unknown = sorted(set(new.events or ()) - CDR_EVENTS)
        if unknown:
            raise HTTPException(400, f"not CDR events: {', '.join(unknown)}")
        for line in new.headers:
            name, sep, _value = line.partition(":")
            if not sep or not name.strip():
                raise HTTPException(400, f"a header is 'Name: Value', not {line!r}")
        try:
            added = webhooks.add(
                new.url,
                secret=new_secret() if new.secret else None,
                headers=new.headers,
                events=new.events,
                subscription_id=new.id,
            )
        except IntegrityError as e:
            raise HTTPException(409, f"a subscription {new.id!r} exists already") from e
        return _public(added, {}) | {"secret": added.secret}

    @api.delete("/webhooks/{subscription_id}", tags=["webhooks"], status_code=204)
    def remove_webhook(subscription_id: str) -> Response:
        """Delete a subscription and its deliveries."""
        try:
            webhooks.remove(subscription_id)
        except UnknownSubscription as e:
            raise HTTPException(404, str(e)) from e
        return Response(status_code=204)

    @api.post("/webhooks/{subscription_id}/replay", tags=["webhooks"])
    def replay_webhook(subscription_id: str, replay: Replay) -> dict[str, int]:
        """Send matching deliveries again (same webhook-id, fresh signature)."""
        try:
            count = webhooks.replay(
                subscription_id,
                since=_aware(replay.since),
                until=_aware(replay.until),
                event_id=replay.event_id,
            )
        except UnknownSubscription as e:
            raise HTTPException(404, str(e)) from e
        return {"queued": count}

    @api.post("/webhooks/{subscription_id}/enable", tags=["webhooks"])
    def enable_webhook(subscription_id: str) -> dict[str, str]:
        """Re-enable a subscription a 410 disabled."""
        try:
            webhooks.set_enabled(subscription_id, True)
        except UnknownSubscription as e:
            raise HTTPException(404, str(e)) from e
        return {"id": subscription_id, "state": "enabled"}

    # -- ingest --------------------------------------------------------------------------------

    async def ingest(endpoint: str, checked: Accepted | Counted | Refused) -> JSONResponse:
        if isinstance(checked, Refused):
            INGESTED.labels(endpoint, "refused").inc()
            return JSONResponse({"error": checked.code, "detail": checked.detail}, 400)
        if isinstance(checked, Counted):
            INGESTED.labels(endpoint, "counted").inc()
            return JSONResponse({"event": checked.event, "published": False})
        try:
            await publisher.send(checked.role, checked.key, checked.value)
        except (KafkaError, OSError, TimeoutError) as e:
            INGESTED.labels(endpoint, "unavailable").inc()
            log.warning("ingest: Kafka unavailable: %s", e)
            return JSONResponse({"error": "kafkaUnavailable", "detail": str(e)[:200]}, 503)
        INGESTED.labels(endpoint, "published").inc()
        return JSONResponse({"event": checked.event, "published": True})

    @api.post("/ingest/openvidu", tags=["ingest"], openapi_extra={"requestBody": INGEST_BODY})
    async def ingest_openvidu(
        request: Request,
        media_node_id: Annotated[str | None, Query(alias="mediaNodeId", max_length=255)] = None,
    ) -> JSONResponse:
        """An OpenVidu webhook body (point OPENVIDU_WEBHOOK_ENDPOINT here): 200 once Kafka
        acknowledged it, 400 with the reason, 503 when Kafka is unreachable."""
        node = media_node_id or settings.ingest_default_node
        checked = check_openvidu(await request.body(), node, settings.ingest_max_skew_s)
        return await ingest("openvidu", checked)

    @api.post("/ingest/liveness", tags=["ingest"], openapi_extra={"requestBody": INGEST_BODY})
    async def ingest_liveness(request: Request) -> JSONResponse:
        """A liveness event (CONTRACT §3), answered like the OpenVidu ingest."""
        return await ingest(
            "liveness", check_liveness(await request.body(), settings.ingest_max_skew_s)
        )

    app.include_router(api)
    return app


def _aware(at: datetime | None) -> datetime | None:
    if at is None or at.tzinfo is not None:
        return at
    return at.replace(tzinfo=UTC)


def _encode_cursor(position: queries.CdrCursor) -> str:
    return base64.urlsafe_b64encode(":".join(map(str, position)).encode()).decode()


def _decode_cursor(cursor: str) -> queries.CdrCursor:
    try:
        ts, partition, offset = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        return int(ts), int(partition), int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise HTTPException(400, "cursor is not one this API gave out") from e


def _public(subscription: Any, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "url": subscription.url,
        "events": subscription.events,
        "headers": len(subscription.headers),
        "signed": subscription.secret is not None,
        "enabled": subscription.enabled,
        "disabled_reason": subscription.disabled_reason,
        "pending": counts.get("pending", 0),
        "delivered": counts.get("delivered", 0),
        "failed": counts.get("failed", 0),
    }


def _dashboard(engine: Engine, webhooks: WebhookStore) -> dict[str, Any]:
    incidents = queries.incidents(engine, limit=200)
    pending = {i["media_node_id"]: i for i in incidents if i["outcome"] == "pending"}
    nodes = []
    for n in queries.nodes(engine):
        if n["status"] == "terminated":
            state = "removed"
        elif n["status"] == "crashed":
            state = "crashed"
        elif n["id"] in pending:
            state = "grace"
        else:
            state = "running"
        grace = pending.get(n["id"])
        nodes.append(
            {
                "id": n["id"],
                "state": state,
                "deadline": grace["deadline_at"] if grace and state == "grace" else None,
                "live_sessions": n["live_sessions"],
                "ip": n["ip"],
                "cluster_id": n["cluster_id"],
                "crashed_at": n["crashed_at"],
                "recovered_at": n["recovered_at"],
            }
        )
    counts = webhooks.counts()
    return {
        "now": datetime.now(UTC),
        "nodes": nodes,
        "incidents": incidents[:20],
        "recoveries": queries.recoveries(engine, limit=20),
        "webhooks": [_public(s, counts.get(s.id, {})) for s in webhooks.subscriptions()],
    }
