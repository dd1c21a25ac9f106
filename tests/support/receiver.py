"""A real HTTP webhook receiver for tests: records every request and answers as told."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Receiver", "Request", "first_deliveries", "flaky", "running_receiver"]


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


@dataclass
class Receiver:
    """``answer(request_without_status) -> status`` decides; the default is 204."""

    port: int = 0
    answer: Callable[[str, dict[str, str], bytes], int] = lambda _p, _h, _b: 204
    requests: list[Request] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.answer(self.path, headers, body)
                # Recorded before the answer goes out: once the sender has read a 2xx it may send
                # the key's next event, whose thread must not get into the list first.
                with receiver.changed:
                    receiver.requests.append(Request(self.path, headers, body, status, time.time()))
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the port: senders get connection refused until ``start`` again (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait(self, condition: Callable[[list[Request]], bool], timeout: float = 60) -> None:
        """Until ``condition(requests)`` holds; woken by every request, never by a clock."""
        with self.changed:
            if not self.changed.wait_for(lambda: condition(self.requests), timeout=timeout):
                raise TimeoutError(
                    f"receiver: condition not met after {len(self.requests)} requests"
                )

    def delivered(self) -> list[Request]:
        with self.changed:
            return [r for r in self.requests if 200 <= r.status < 300]

    def delivered_ids(self) -> set[str]:
        return {r.headers["webhook-id"] for r in self.delivered()}


def first_deliveries(requests: Sequence[Request]) -> list[str]:
    """webhook-ids in the order of their first 2xx answer."""
    seen: dict[str, None] = {}
    for r in requests:
        if 200 <= r.status < 300:
            seen.setdefault(r.headers["webhook-id"], None)
    return list(seen)


def flaky(
    rate: float, max_failures: int, seed: int = 7
) -> Callable[[str, dict[str, str], bytes], int]:
    """Answers 500 at random (``rate``), at most ``max_failures`` times per webhook-id."""
    rng = random.Random(seed)
    failures: dict[str, int] = {}
    lock = threading.Lock()

    def answer(_path: str, headers: dict[str, str], _body: bytes) -> int:
        with lock:
            wid = headers.get("webhook-id", "")
            if failures.get(wid, 0) < max_failures and rng.random() < rate:
                failures[wid] = failures.get(wid, 0) + 1
                return 500
            return 200

    return answer


@contextmanager
def running_receiver(
    answer: Callable[[str, dict[str, str], bytes], int] | None = None,
) -> Iterator[Receiver]:
    receiver = Receiver() if answer is None else Receiver(answer=answer)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
