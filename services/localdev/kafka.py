"""A real single-node Apache Kafka broker (KRaft, broker + controller) run as a plain JVM process.

Why: tests and `make up` need a real broker on machines with Java and Maven but no Docker engine
and no Apache download mirror. Maven Central serves the broker's jars (scripts/kafka/pom.xml), so
they are collected once into the git-ignored .cache/kafka/libs and `kafka.Kafka` is started with
`java -cp`. Production and machines with Docker use the official image in docker-compose.yml.

A state directory belongs to one broker and holds:

    server.properties  log4j2.properties  broker.pid  broker.log  data/ (log.dirs)

Topics are never auto-created (`auto.create.topics.enable=false`): whoever needs a topic creates
it, so a typo in a topic name fails loudly instead of silently making a new topic.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import click
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.localdev import LOOPBACK, LocalInfraError, free_ports, log_tail, run_checked

__all__ = [
    "KafkaStatus",
    "LocalKafka",
    "fetch_jars",
    "kafka_cli",
    "libs_dir",
    "project_root",
    "running_kafka",
    "server_properties",
]

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
KAFKA_JAR_PATTERN = "kafka_2.13-*.jar"
BROKER_MAIN = "kafka.Kafka"
HAS_PROC = Path("/proc/self/stat").exists()

# Brokers this Python process started, by pid. Module-wide rather than per LocalKafka so that any
# instance for the same state dir (say a `stop` after a `start`, both run by a CliRunner in one
# test process) waits on the child and reaps it instead of leaving a zombie behind.
_children: dict[int, subprocess.Popen[bytes]] = {}

# Console appender at WARN: the broker's stdout goes to broker.log, which stays short and readable.
# The one INFO line kept ("Kafka Server started") shows in the log when the broker came up.
LOG4J2_PROPERTIES = """\
status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def project_root() -> Path:
    """The repository root, where scripts/kafka/pom.xml and the .cache/ folder live."""
    return Path(__file__).resolve().parents[2]


def libs_dir(root: Path) -> Path:
    """Where `fetch_jars` puts the broker's classpath."""
    return root / ".cache" / "kafka" / "libs"


def fetch_jars(root: Path) -> Path:
    """Collect the broker's runtime jars from Maven Central, unless they are already there.

    The check is for the broker jar itself, so a second run is offline and instant.
    """
    libs = libs_dir(root)
    if any(libs.glob(KAFKA_JAR_PATTERN)):
        return libs
    pom = root / "scripts" / "kafka" / "pom.xml"
    command = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    run_checked(command, "collecting the Kafka jars with Maven")
    if not any(libs.glob(KAFKA_JAR_PATTERN)):
        raise LocalInfraError(f"Maven ran but no {KAFKA_JAR_PATTERN} landed in {libs}")
    return libs


def server_properties(log_dir: Path, port: int, controller_port: int) -> str:
    """The broker's server.properties: one combined node with a static quorum of itself.

    Replication factors and min ISR drop to 1 (the defaults need 3 brokers); the partition counts
    and rebalance delay shrink so tests do not wait for a group coordinator to settle.
    """
    listeners = f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir.resolve()),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


@dataclass(frozen=True)
class KafkaStatus:
    """What `LocalKafka.status` found; `pid` and `bootstrap` are None when nothing runs."""

    running: bool
    pid: int | None = None
    bootstrap: str | None = None


class LocalKafka:
    """One broker process and its state directory.

    Works across processes: `start` records the pid in broker.pid, so a later `status` or `stop`
    (another CLI call) finds the broker again.
    """

    def __init__(self, state_dir: Path, libs: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.libs = libs

    @property
    def log_file(self) -> Path:
        return self.state_dir / "broker.log"

    def start(
        self,
        port: int = 9092,
        controller_port: int = 9093,
        timeout: float = READY_TIMEOUT_S,
        *,
        keep_data: bool = False,
    ) -> str:
        """Start the broker, wait until it answers a metadata request, return its bootstrap.

        Retries once with a wiped data dir: on a loaded machine KRaft quorum formation can time
        out, and a fresh start is the known remedy. Fails fast on a busy port instead, since a
        retry cannot help and a stranger listening there would look like a ready broker.
        ``keep_data`` (a restart whose topics must survive, as in the fault tests) retries
        without wiping.
        """
        if self.status().running:
            raise LocalInfraError(f"a broker from {self.state_dir} is already running")
        _ensure_ports_free(port, controller_port)
        try:
            return self._start_once(port, controller_port, timeout)
        except LocalInfraError as exc:
            again = "on the same data" if keep_data else "with a fresh data dir"
            logger.warning("local Kafka did not start (%s); retrying %s", exc, again)
            self.stop()
            if not keep_data:
                shutil.rmtree(self.state_dir / "data", ignore_errors=True)
        try:
            return self._start_once(port, controller_port, timeout)
        except LocalInfraError:
            self.stop()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the broker's process group, SIGKILL it after `timeout`; no-op when stopped."""
        pid = self._pid()
        if pid is not None and self._alive(pid):
            _signal_group(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                _signal_group(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
        (self.state_dir / "broker.pid").unlink(missing_ok=True)

    def status(self) -> KafkaStatus:
        pid = self._pid()
        if pid is None or not self._alive(pid):
            return KafkaStatus(running=False)
        return KafkaStatus(running=True, pid=pid, bootstrap=self._configured_bootstrap())

    def _start_once(self, port: int, controller_port: int, timeout: float) -> str:
        data_dir = self.state_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "server.properties").write_text(
            server_properties(data_dir, port, controller_port)
        )
        (self.state_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        self._format_storage()
        self._launch()
        bootstrap = f"{LOOPBACK}:{port}"
        self._wait_ready(bootstrap, timeout)
        return bootstrap

    def _java(self, main_class: str, *args: str) -> list[str]:
        log_config = self.state_dir / "log4j2.properties"
        return [
            "java",
            "-Xms256m",
            "-Xmx512m",
            f"-Dlog4j2.configurationFile={log_config}",
            "-cp",
            f"{self.libs}/*",
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        """Write meta.properties into log.dirs; a no-op when the dir is already formatted.

        No `--standalone`: the static `controller.quorum.voters` already names the quorum, and
        Kafka 4.1 rejects the two together.
        """
        properties = str(self.state_dir / "server.properties")
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self._cluster_id(),
            "-c",
            properties,
            "--ignore-formatted",
        )
        run_checked(command, "formatting the Kafka storage", cwd=self.state_dir)

    def _cluster_id(self) -> str:
        """The id already in data/meta.properties, else a new one.

        `--ignore-formatted` still rejects a formatted dir whose id differs from `-t`, so a
        restart on kept data must pass the id it was formatted with.
        """
        try:
            lines = (self.state_dir / "data" / "meta.properties").read_text().splitlines()
        except OSError:
            return _new_cluster_id()
        found = [line.partition("=")[2].strip() for line in lines if line.startswith("cluster.id=")]
        return found[0] if found else _new_cluster_id()

    def _launch(self) -> None:
        """Start the JVM detached (own session) so it outlives a `mediacdr kafka start` call."""
        command = self._java(BROKER_MAIN, str(self.state_dir / "server.properties"))
        with self.log_file.open("ab") as log:
            try:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.state_dir,
                    start_new_session=True,
                )
            except OSError as exc:
                raise LocalInfraError(f"could not run java: {exc}") from exc
        _children[process.pid] = process
        (self.state_dir / "broker.pid").write_text(f"{process.pid}\n")

    def _wait_ready(self, bootstrap: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pid = self._pid()
        while time.monotonic() < deadline:
            if pid is None or not self._alive(pid):
                raise LocalInfraError(f"the Kafka broker exited during start-up; {self._tail()}")
            if _answers_metadata(bootstrap):
                return
            time.sleep(0.25)
        raise LocalInfraError(
            f"the Kafka broker did not answer at {bootstrap} within {timeout:.0f} s; {self._tail()}"
        )

    def _tail(self) -> str:
        return f"end of {self.log_file}:\n{log_tail(self.log_file)}"

    def _pid(self) -> int | None:
        try:
            return int((self.state_dir / "broker.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self, pid: int) -> bool:
        """True while `pid` is our broker.

        A child of this process is judged by `poll()` alone (which also reaps it): its cmdline
        can lack the main class for a moment while the java launcher starts up.
        """
        child = _children.get(pid)
        if child is None:
            return _is_broker(pid)
        if child.poll() is None:
            return True
        del _children[pid]
        return False

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        child = _children.get(pid)
        if child is not None:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            del _children[pid]
            return True
        deadline = time.monotonic() + timeout
        while not _exited(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return _exited(pid)

    def _configured_bootstrap(self) -> str | None:
        try:
            lines = (self.state_dir / "server.properties").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            key, _, value = line.partition("=")
            if key.strip() == "advertised.listeners":
                plaintext = [v for v in value.split(",") if v.startswith("PLAINTEXT://")]
                return plaintext[0].removeprefix("PLAINTEXT://") if plaintext else None
        return None


def _new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding, not starting with '-' (Kafka's rule)."""
    while True:
        candidate = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def _exited(pid: int) -> bool:
    """True once `pid` has finished exiting (gone, or a zombie with no threads left).

    By then its sockets are closed, so a `start` right after `stop` finds the ports free.
    """
    if not HAS_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return True
    # fields[0] is the state, fields[17] the thread count: a JVM's main thread turns zombie
    # while its other threads still hold the sockets, so both must say it is over.
    return fields[0] in {"Z", "X"} and int(fields[17]) <= 1


def _is_broker(pid: int) -> bool:
    """True when `pid` is a live broker JVM: a stale pid file whose pid now belongs to some
    other program must never get that program signalled."""
    if _exited(pid):
        return False
    if not HAS_PROC:  # no way to look at the command line: trust the pid file
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return BROKER_MAIN.encode() in cmdline.split(b"\0")


def _signal_group(pid: int, signum: signal.Signals) -> None:
    """Signal the broker's whole process group (it leads its own session), leaving no strays."""
    with suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _ensure_ports_free(*ports: int) -> None:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
            try:
                sock.bind((LOOPBACK, port))
            except OSError as exc:
                raise LocalInfraError(f"port {port} on {LOOPBACK} is in use ({exc})") from exc


def _answers_metadata(bootstrap: str) -> bool:
    """A TCP connect first (cheap, and keeps aiokafka from logging connection errors while the
    JVM boots), then a real metadata request that must list at least one broker."""
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        return False
    try:
        return asyncio.run(_broker_count(bootstrap)) > 0
    except (KafkaError, OSError, TimeoutError):
        return False


async def _broker_count(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        async with asyncio.timeout(10):
            await admin.start()
            cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return len(cluster["brokers"])


@contextmanager
def running_kafka(tmp_dir: Path) -> Iterator[str]:
    """A throwaway broker on free ports for the length of the block; yields its bootstrap.

    Call it from synchronous code (a session fixture): the readiness probe runs its own event loop.
    """
    broker = LocalKafka(tmp_dir, fetch_jars(project_root()))
    port, controller_port = free_ports(2)
    bootstrap = broker.start(port, controller_port)
    try:
        yield bootstrap
    finally:
        broker.stop()


# --- `mediacdr kafka …` ------------------------------------------------------------------------

_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/kafka"),
    show_default=True,
    help="State directory: config, pid file, broker.log and the topic data.",
)


def _broker(data_dir: Path) -> LocalKafka:
    return LocalKafka(data_dir, libs_dir(project_root()))


@click.group("kafka")
def kafka_cli() -> None:
    """A local single-node Kafka broker from Maven Central jars (no Docker needed)."""


@kafka_cli.command()
def fetch() -> None:
    """Collect the broker's jars.

    They go to .cache/kafka/libs; skipped when already there, so a second run is offline.
    """
    try:
        click.echo(fetch_jars(project_root()))
    except LocalInfraError as exc:
        raise click.ClickException(str(exc)) from exc


@kafka_cli.command()
@_data_dir_option
@click.option("--port", default=9092, show_default=True, help="Client (PLAINTEXT) port.")
@click.option("--controller-port", default=9093, show_default=True, help="KRaft controller port.")
def start(data_dir: Path, port: int, controller_port: int) -> None:
    """Start the broker in the background.

    Prints the bootstrap address; when the broker already runs, says so and prints it too.
    """
    broker = _broker(data_dir)
    current = broker.status()
    if current.running:
        click.echo(f"Kafka is already running (pid {current.pid})", err=True)
        click.echo(current.bootstrap)
        return
    try:
        fetch_jars(project_root())
        click.echo(broker.start(port, controller_port))
    except LocalInfraError as exc:
        raise click.ClickException(str(exc)) from exc


@kafka_cli.command()
@_data_dir_option
def stop(data_dir: Path) -> None:
    """Stop the broker.

    SIGTERM, then SIGKILL after 30 s; the topic data stays in the data dir for the next start.
    """
    broker = _broker(data_dir)
    was_running = broker.status().running
    broker.stop()
    click.echo("Kafka stopped" if was_running else "Kafka was not running", err=True)


@kafka_cli.command()
@_data_dir_option
def status(data_dir: Path) -> None:
    """Say whether the broker runs.

    Exit status 0 either way: it reports, and `start` is the idempotent way to make sure.
    """
    current = _broker(data_dir).status()
    if current.running:
        click.echo(f"Kafka is running (pid {current.pid}) at {current.bootstrap}")
    else:
        click.echo("Kafka is not running")
