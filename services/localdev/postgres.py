"""A throwaway PostgreSQL cluster: initdb into a temporary dir, serve on a free port, then discard.

Why: the store must be tested against real PostgreSQL (its locking, types and constraint errors
differ from SQLite's), and CI has the server binaries but no Docker. A private cluster per test
session needs no shared server, no password and no cleanup of old data.

The cluster is tuned for speed, not durability (fsync off); it listens on 127.0.0.1 only, trusts
every local connection, and keeps its Unix socket inside its own data dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from services.localdev import LOOPBACK, LocalInfraError, free_ports, log_tail, run_checked

__all__ = ["DATABASE", "PostgresServer", "find_bindir", "postgres_server", "running_postgres"]

DATABASE = "mediacdr"
SUPERUSER = "postgres"
DEBIAN_SERVER_DIRS = Path("/usr/lib/postgresql")
MISSING_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/ensure-postgres.sh"
)


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: Debian's highest version first, then PATH.

    Debian keeps server binaries out of PATH (/usr/lib/postgresql/<version>/bin), so PATH alone
    would miss them; other systems put them on PATH.
    """
    candidates = [path for path in DEBIAN_SERVER_DIRS.glob("*/bin") if _has_server(path)]
    if candidates:
        return max(candidates, key=_version_key)
    initdb = shutil.which("initdb")
    if initdb is not None and _has_server(Path(initdb).parent):
        return Path(initdb).parent
    raise LocalInfraError(MISSING_HINT)


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()


def _version_key(bindir: Path) -> tuple[int, ...]:
    """'15' → (15,), '9.6' → (9, 6); a non-numeric folder name sorts last."""
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return (-1,)


@dataclass(frozen=True)
class _Cluster:
    """The server's tools bound to one data dir; `as_postgres` runs them as that user."""

    bindir: Path
    root: Path
    port: int
    as_postgres: bool

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def init(self) -> None:
        self._tool(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        settings = {
            "listen_addresses": f"'{LOOPBACK}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.data_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            # room for a rebuild's working set, and no checkpoint forced by WAL volume on the
            # way (the defaults, 128MB and 1GB, forced 92 during the 1M-event rebuild)
            "shared_buffers": "512MB",
            "max_wal_size": "8GB",
            "checkpoint_timeout": "30min",
        }
        # Appending keeps the file's owner (the server's user) even when we run as root.
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# mediacdr throwaway test cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        try:
            self._tool(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "start",
            )
        except LocalInfraError as exc:
            tail = log_tail(self.log_file)
            raise LocalInfraError(f"{exc}\nend of {self.log_file}:\n{tail}") from exc

    def stop(self) -> None:
        self._tool("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def _tool(self, name: str, *args: str) -> None:
        prefix = ["runuser", "-u", SUPERUSER, "--"] if self.as_postgres else []
        run_checked([*prefix, str(self.bindir / name), *args], f"PostgreSQL {name}", cwd=self.root)


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster: its URL, and a stop and start for outage tests (the data
    and the port are kept across them)."""

    url: str
    _cluster: _Cluster

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut)."""
        self._cluster.stop()

    def start(self) -> None:
        self._cluster.start()


@contextmanager
def postgres_server(tmp_dir: Path) -> Iterator[PostgresServer]:
    """A fresh cluster with an empty `mediacdr` database for the length of the block."""
    bindir = find_bindir()
    with _cluster_root(tmp_dir) as root:
        cluster = _Cluster(bindir, root, free_ports(1)[0], as_postgres=os.geteuid() == 0)
        cluster.init()
        cluster.start()
        try:
            _create_database(cluster.port)
            url = f"postgresql+psycopg://{SUPERUSER}@{LOOPBACK}:{cluster.port}/{DATABASE}"
            yield PostgresServer(url, cluster)
        finally:
            if (cluster.data_dir / "postmaster.pid").exists():  # not stopped by the block
                cluster.stop()


@contextmanager
def running_postgres(tmp_dir: Path) -> Iterator[str]:
    """A fresh cluster with an empty `mediacdr` database; yields its SQLAlchemy URL."""
    with postgres_server(tmp_dir) as server:
        yield server.url


@contextmanager
def _cluster_root(tmp_dir: Path) -> Iterator[Path]:
    """A directory the server's user owns, for the data dir and the server log.

    initdb refuses to run as root, so as root the tools run as `postgres`. That user cannot
    enter pytest's temp dirs (mode 0700, owned by root), hence a separate dir under the system
    temp dir handed over to it and removed afterwards.
    """
    if os.geteuid() != 0:
        root = tmp_dir / "postgres"
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    root = Path(tempfile.mkdtemp(prefix="mediacdr-pg-"))
    try:
        _give_to_postgres(root)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _give_to_postgres(path: Path) -> None:
    try:
        shutil.chown(path, user=SUPERUSER)
    except LookupError as exc:
        raise LocalInfraError(
            f"running as root needs a '{SUPERUSER}' system user to own the cluster; "
            "run scripts/ensure-postgres.sh"
        ) from exc


def _create_database(port: int) -> None:
    try:
        with psycopg.connect(
            host=LOOPBACK, port=port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except psycopg.Error as exc:
        raise LocalInfraError(f"could not create database {DATABASE!r}: {exc}") from exc
