"""Docker-free local infrastructure: a real Kafka broker and a throwaway PostgreSQL cluster.

Why: the tests and `make up` need real servers on machines that have Java, Maven and PostgreSQL
binaries but no Docker engine. The servers live in two modules, imported explicitly so that nothing
heavy loads with the package:

    services.localdev.kafka     a single-node KRaft broker from Maven Central jars, plus `kafka_cli`
    services.localdev.postgres  `running_postgres`, a cluster made by initdb in a temporary dir

This package root holds only what both share: the error they raise and two process helpers.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LOOPBACK", "LocalInfraError", "free_ports", "log_tail", "run_checked"]

LOOPBACK = "127.0.0.1"


class LocalInfraError(RuntimeError):
    """A local server could not be prepared, started or stopped.

    Deliberately outside the domain error tree (services.core): this is developer tooling, and
    test fixtures turn it into a `pytest.fail` with the message, which already says what to do.
    """


def free_ports(count: int) -> list[int]:
    """Return `count` distinct ports that were free on 127.0.0.1 a moment ago.

    All sockets stay bound until every port is picked, so the ports differ from each other.
    Another process may still grab one before the server binds it; that race is accepted.
    """
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run_checked(command: Sequence[str], what: str, cwd: Path | None = None) -> str:
    """Run a tool to completion and return its stdout; on failure say `what` failed and show why.

    Output is captured rather than streamed: these tools are chatty, and it only matters when
    they fail, in which case it goes into the error message.
    """
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    except OSError as exc:  # the tool itself is missing or not executable
        raise LocalInfraError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise LocalInfraError(f"{what} failed (exit {done.returncode}):\n{output[-4000:]}")
    return done.stdout


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a server log, for error messages; a note when there is no log yet."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
