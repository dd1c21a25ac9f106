"""Talking to a running service's `/health` and `/metrics` (CONTRACT §14) from the e2e tests:
a free port to serve them on, the Prometheus text format, and polling with a deadline (an HTTP
endpoint has nothing to await)."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = ["Endpoint", "families", "free_port", "samples", "value"]

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The sample lines of a Prometheus text exposition."""
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        found.append((match["name"], labels, float(match["value"])))
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    """The sum of the ``name`` samples with ``labels`` (among others); None when there is none."""
    found = [
        sample_value
        for sample_name, sample_labels, sample_value in samples(text)
        if sample_name == name and labels.items() <= sample_labels.items()
    ]
    return sum(found) if found else None


def families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE)) | {
        name for name, _, _ in samples(text)
    }


class Endpoint:
    def __init__(self, name: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.url, self.process, self.log = name, f"http://127.0.0.1:{port}", process, log

    def poll(self, condition: Callable[[httpx.Response], bool], path: str, what: str) -> str:
        """GET ``path`` until ``condition`` holds; fails with the service's log otherwise."""
        deadline = time.monotonic() + 90
        last: object = None
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log.read_text(errors='replace')}")
            try:
                response = httpx.get(self.url + path, timeout=5)
            except httpx.TransportError as e:  # not listening yet
                last = e
            else:
                if condition(response):
                    return response.text
                shown = [line for line in response.text.splitlines() if "mediacdr_" in line]
                last = f"{response.status_code} " + "\n".join(shown or [response.text[:2000]])
            if time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{self.name}: {what}; last answer {last}\n{tail}")
            time.sleep(0.1)  # polling an HTTP endpoint: there is no event to await
