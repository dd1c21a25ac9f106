"""``/health`` and ``/metrics`` of a service (CONTRACT §14), on ``MEDIACDR_METRICS_ADDR``.

A standard-library HTTP server in a daemon thread, so it answers whatever the service's event
loop is doing (a long SQL batch, a Faust rebalance):

- ``GET /metrics``: the default Prometheus registry (``prometheus_client.generate_latest``);
- ``GET /health``: ``{"status": "ok" | "unhealthy", …details}``, 200 or 503, from the service's
  ``health`` callback (called in the server thread: it must only read plain attributes);
- anything else: 404.

Also here: :class:`Heartbeat`, what a service loop stamps to say it still turns, and the
consumer-lag gauge shared by the Kafka-facing services.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from services.core.errors import ConfigurationError

__all__ = [
    "CONSUMER_LAG",
    "Health",
    "Heartbeat",
    "LagReporter",
    "MetricsAddressError",
    "MetricsServer",
    "all_healthy",
    "metrics_server",
    "parse_addr",
    "serve_metrics",
]

log = logging.getLogger(__name__)

#: ``(healthy, details)``; the details are merged into the ``/health`` JSON body.
Health = Callable[[], tuple[bool, dict[str, Any]]]

CONSUMER_LAG = Gauge(
    "mediacdr_consumer_lag",
    "Records on a partition the service has not consumed yet (end offset − position).",
    ["service", "topic", "partition"],
)


class MetricsAddressError(ConfigurationError, ValueError):
    """``MEDIACDR_METRICS_ADDR`` is malformed, or cannot be bound (in use, not local)."""


def parse_addr(addr: str) -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:9101"`` or ``":9101"`` (every IPv4 interface) → (host, port).

    Port 0 asks the system for a free port.
    """
    text = addr.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise MetricsAddressError(f"MEDIACDR_METRICS_ADDR must be host:port, not {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise MetricsAddressError(
            f"MEDIACDR_METRICS_ADDR: write an IPv6 address in brackets, e.g. [::1]:9101, "
            f"not {addr!r}"
        )
    port = int(port_text)
    if port > 65535:
        raise MetricsAddressError(f"MEDIACDR_METRICS_ADDR: port {port} of {addr!r} is out of range")
    return host or "0.0.0.0", port


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: Health

    def server_bind(self) -> None:
        # HTTPServer.server_bind would ask DNS for the host's FQDN (slow without a resolver).
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._answer(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        elif path == "/health":
            self._health()
        else:
            self._answer(404, "text/plain; charset=utf-8", b"not found\n")

    def _health(self) -> None:
        try:
            healthy, details = self.server.health()
        except Exception as e:  # a broken callback is an unhealthy service, not a dead server
            log.exception("health check failed")
            healthy, details = False, {"error": f"{type(e).__name__}: {e}"}
        body = {"status": "ok" if healthy else "unhealthy", **details}
        data = json.dumps(body, default=str).encode()
        self._answer(200 if healthy else 503, "application/json", data)

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class MetricsServer:
    """A running ``/health`` + ``/metrics`` server; :meth:`stop` closes it."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.25},
            name="mediacdr-metrics",
            daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(addr: str, health: Health) -> MetricsServer:
    """Start serving on ``addr`` (``host:port``) in a daemon thread; logs the bound address."""
    host, port = parse_addr(addr)
    server_class = _Server6 if ":" in host else _Server
    try:
        server = server_class((host, port), _Handler)
    except OSError as e:
        raise MetricsAddressError(
            f"cannot serve metrics on {addr!r} (MEDIACDR_METRICS_ADDR): {e}"
        ) from e
    server.health = health
    running = MetricsServer(server)
    log.info("health and metrics on %s (/health, /metrics)", running.url)
    return running


@contextmanager
def metrics_server(addr: str, health: Health) -> Iterator[MetricsServer | None]:
    """:func:`serve_metrics` for the ``with`` block; no server at all when ``addr`` is empty."""
    if not addr.strip():
        yield None
        return
    server = serve_metrics(addr, health)
    try:
        yield server
    finally:
        server.stop()


class Heartbeat:
    """When a service loop last turned; healthy while that was less than ``max_age_s`` ago.

    ``beat`` runs on the event loop, ``health`` in the server thread: one float is shared.
    """

    def __init__(self, name: str, max_age_s: float) -> None:
        self.name = name
        self.max_age_s = max_age_s
        self.last: float | None = None  # time.monotonic() of the last beat
        self.stopped = False

    def beat(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self.stopped = True

    def health(self) -> tuple[bool, dict[str, Any]]:
        last = self.last
        if self.stopped:
            return False, {self.name: "stopped"}
        if last is None:
            return False, {self.name: "starting"}
        age = time.monotonic() - last
        state = "ok" if age <= self.max_age_s else f"no progress for {age:.1f} s"
        return age <= self.max_age_s, {self.name: state, f"{self.name}_age_s": round(age, 3)}


def all_healthy(*checks: Health) -> Health:
    """Healthy when every check is; details merged."""

    def health() -> tuple[bool, dict[str, Any]]:
        ok, details = True, {}
        for check in checks:
            healthy, found = check()
            ok = ok and healthy
            details.update(found)
        return ok, details

    return health


class LagReporter:
    """Keeps ``mediacdr_consumer_lag{service=…}`` equal to the latest lags it was given:
    partitions given no more (revoked) are removed, not left at a stale value."""

    def __init__(self, service: str, every_s: float = 1.0) -> None:
        self.service = service
        self.every_s = every_s
        self._children: dict[tuple[str, int], Gauge] = {}
        self._next = 0.0

    def due(self) -> bool:
        """True at most once per ``every_s``: computing lags costs a little, scrapes are rare."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every_s
        return True

    def set(self, lags: Mapping[tuple[str, int], int]) -> None:
        for gone in self._children.keys() - lags.keys():
            del self._children[gone]
            CONSUMER_LAG.remove(self.service, gone[0], str(gone[1]))
        for key, lag in lags.items():
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = CONSUMER_LAG.labels(self.service, key[0], str(key[1]))
            child.set(max(0, lag))

    def clear(self) -> None:
        self.set({})
