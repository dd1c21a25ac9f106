"""The `mediacdr` command: one sub-command per service and per operation (CONTRACT §15)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from aiokafka.errors import KafkaError

from services.config import DetectorSettings, KafkaSettings
from services.localdev.kafka import kafka_cli

if TYPE_CHECKING:
    from services.topics import TopicSpec

__all__ = ["main"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_UNREACHABLE = (KafkaError, OSError)


def _kafka_down(error: Exception) -> click.ClickException:
    bootstrap = KafkaSettings().kafka_bootstrap
    return click.ClickException(
        f"cannot read from Kafka at {bootstrap} (MEDIACDR_KAFKA_BOOTSTRAP): {error}"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mediacdr: crash detection and OpenVidu-compatible CDR for media-server clusters."""


main.add_command(kafka_cli, name="kafka")


@main.command()
@click.option("--loglevel", default="WARNING", show_default=True)
def detector(loglevel: str) -> None:
    """Run the crash detector (a Faust worker) until interrupted."""
    from services.detector.worker import run_detector

    run_detector(DetectorSettings(), loglevel=loglevel)


@main.group()
def topics() -> None:
    """The topics mediacdr uses: the six of the contract and the detector's internal ones."""


def _all_topics(settings: DetectorSettings) -> list[TopicSpec]:
    from services.detector.worker import internal_topics
    from services.topics import contract_topics

    return contract_topics(settings) + internal_topics(settings)


@topics.command("create")
def topics_create() -> None:
    """Create every missing topic with MEDIACDR_PARTITIONS partitions, its retention and its
    cleanup policy (idempotent; an existing topic is never altered)."""
    from services.core.errors import MediaCdrError
    from services.topics import ensure_topics

    settings = DetectorSettings()
    try:
        created = asyncio.run(ensure_topics(settings, _all_topics(settings)))
    except MediaCdrError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@topics.command("describe")
def topics_describe() -> None:
    """Partitions, replicas, retention and cleanup policy of each topic as the broker has them,
    beside what `topics create` would set; exit 1 when a partition count differs."""
    from services.core.errors import MediaCdrError
    from services.topics import DESCRIBED_CONFIGS, describe_topics

    settings = DetectorSettings()
    specs = _all_topics(settings)
    try:
        states = asyncio.run(describe_topics(settings, [s.name for s in specs]))
    except MediaCdrError as e:
        raise click.ClickException(str(e)) from e
    differs = False
    for spec, state in zip(specs, states, strict=True):
        if state.partitions is None:
            click.echo(f"{spec.name}: missing (`mediacdr topics create` makes it)")
            continue
        wanted = "" if state.partitions == spec.partitions else f" (wanted {spec.partitions})"
        differs = differs or bool(wanted)
        configs = " ".join(f"{k}={state.config.get(k, '?')}" for k in DESCRIBED_CONFIGS)
        click.echo(
            f"{spec.name}: {state.partitions} partitions{wanted}, replication {state.replicas}, "
            f"{configs}"
        )
    if differs:
        raise SystemExit(1)


@main.command()
@click.argument("topic")
@click.option("--brief", is_flag=True, help="One line per record: event, key, incident.")
def tail(topic: str, brief: bool) -> None:
    """Print every record now on TOPIC with its key and headers, then exit."""
    from services.ops.tail import describe, read_topic

    async def run() -> int:
        records = [r async for r in read_topic(KafkaSettings(), topic)]
        if brief:  # the story in event-time order; partitions interleave as they were stamped
            records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        for record in records:
            click.echo(describe(record, brief=brief))
        return len(records)

    click.echo(f"{asyncio.run(run())} records on {topic}")


@main.command()
def samples() -> None:
    """Play the sample story (two nodes, a blip, a crash, bad input) on the input topics."""
    from services.simulator.feed import feed_samples

    settings = KafkaSettings()
    for line in asyncio.run(feed_samples(settings, int(time.time() * 1000))):
        click.echo(line)


_FAULT_OPTIONS = {  # option → FaultRates field
    "crash_rate": "crash_disconnect",
    "silent_crash_rate": "crash_silent",
    "blip_rate": "blip",
    "flap_rate": "flap",
    "shutdown_rate": "planned_shutdown",
    "malformed_rate": "malformed_per_min",
    "recovery_share": "recovery_share",
    "node_return": "node_return_s",
}


@main.command()
@click.option("--nodes", default=10, show_default=True, help="Media nodes (media_sim-1…).")
@click.option("--session-rate", default=1.0, show_default=True, help="New sessions per second.")
@click.option(
    "--duration", default=60.0, show_default=True, help="Simulated seconds; 0 = until stopped."
)
@click.option("--seed", default=1, show_default=True)
@click.option(
    "--mode", type=click.Choice(["realtime", "max"]), default="realtime", show_default=True
)
@click.option("--speed", default=1.0, show_default=True, help="realtime: story time per second.")
@click.option("--rate", default=0.0, show_default=True, help="max: records/s; 0 = unlimited.")
@click.option(
    "--faults",
    type=click.Choice(["none", "default", "chaos"]),
    default="none",
    show_default=True,
    help="Fault preset (docs/SIMULATOR.md); the options below override it.",
)
@click.option("--crash-rate", type=float, help="Crashes by disconnection per node per hour.")
@click.option("--silent-crash-rate", type=float, help="Crashes by silence per node per hour.")
@click.option("--blip-rate", type=float, help="Blips per node per hour.")
@click.option("--flap-rate", type=float, help="Flaps (3–5 blips) per node per hour.")
@click.option("--shutdown-rate", type=float, help="Planned shutdowns per node per hour.")
@click.option("--malformed-rate", type=float, help="Malformed records per minute.")
@click.option("--recovery-share", type=float, help="Share of crashed sessions re-created.")
@click.option("--node-return", type=float, help="Mean seconds before a node comes back; 0 never.")
@click.option("--heartbeat-ms", default=1000, show_default=True, help="0 = no heartbeats.")
@click.option("--mean-session", default=120.0, show_default=True, help="Mean session seconds.")
@click.option("--participants", default=3.0, show_default=True, help="Mean per session.")
def simulate(**opts: Any) -> None:
    """Play a simulated cluster with faults on the input topics (seeded, deterministic).

    The grace window and heartbeat timeout are the detector's (MEDIACDR_GRACE_MS,
    MEDIACDR_HEARTBEAT_TIMEOUT_MS), read from the same environment.
    """
    import dataclasses

    from services.simulator.config import SimConfig, preset
    from services.simulator.model import Simulation
    from services.simulator.run import FeedOptions

    detector = DetectorSettings()
    if opts["mode"] == "max" and opts["duration"] <= 0:
        raise click.BadParameter("--mode max needs a --duration", param_hint="--duration")
    if opts["speed"] <= 0 or opts["rate"] < 0:
        raise click.BadParameter("--speed must be > 0 and --rate ≥ 0")
    faults = preset(opts["faults"], heartbeat_timeout_ms=detector.heartbeat_timeout_ms)
    overrides = {f: opts[o] for o, f in _FAULT_OPTIONS.items() if opts[o] is not None}
    config = SimConfig(
        start_ms=int(time.time() * 1000),
        seed=opts["seed"],
        nodes=opts["nodes"],
        duration_s=opts["duration"],
        session_rate=opts["session_rate"],
        mean_session_s=opts["mean_session"],
        mean_participants=opts["participants"],
        heartbeat_ms=opts["heartbeat_ms"],
        grace_ms=detector.grace_ms,
        heartbeat_timeout_ms=detector.heartbeat_timeout_ms,
        faults=dataclasses.replace(faults, **overrides),
    )
    try:
        sim = Simulation(config)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    options = FeedOptions(mode=opts["mode"], speed=opts["speed"], rate=opts["rate"])
    report = _run_simulation(KafkaSettings(), sim, options)
    click.echo(
        f"sent {report.sent} records in {report.elapsed_s:.1f} s ({report.rate:.0f}/s)"
        + (" — interrupted" if report.interrupted else "")
    )
    for name, value in [*sim.counts.summary().items(), ("horizon_ms", sim.horizon_ms)]:
        click.echo(f"  {name:<30} {value}")


def _run_simulation(settings: KafkaSettings, sim: Any, options: Any) -> Any:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from services.simulator.run import feed

    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:>9.0f} records"),
        TextColumn("{task.fields[rate]:>7.0f}/s"),
        TimeElapsedColumn(),
    )
    started, shown, logged = time.monotonic(), [0.0], [0.0]

    def on_sent(sent: int) -> None:
        elapsed = time.monotonic() - started
        if elapsed - shown[0] < 0.2:
            return
        shown[0] = elapsed
        progress.update(task, completed=sent, rate=sent / elapsed)
        if not console.is_terminal and elapsed - logged[0] >= 30:  # a log, not a screen
            logged[0] = elapsed
            click.echo(f"{sent} records sent in {elapsed:.0f} s", err=True)

    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"simulating ({options.mode})", total=None, rate=0.0)
        try:
            return asyncio.run(feed(settings, sim, options, on_sent))
        except _UNREACHABLE as e:
            raise _kafka_down(e) from e


@main.command("wait-for")
@click.argument("topic")
@click.option(
    "--event", "event_name", default=None, help="Only records whose value has this event."
)
@click.option("--count", default=1, show_default=True)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds.")
@click.option("--since", default=0, help="Only records stamped at or after this epoch ms.")
def wait_for(topic: str, event_name: str | None, count: int, timeout: float, since: int) -> None:
    """Wait until COUNT records (of EVENT) are on TOPIC; exit 1 on timeout."""
    from services.ops.tail import TailedRecord, collect

    def matches(record: TailedRecord) -> bool:
        if record.timestamp_ms < since:
            return False
        if event_name is None:
            return True
        try:
            return bool(json.loads(record.value or b"null").get("event") == event_name)
        except (ValueError, AttributeError):
            return False

    try:
        found = asyncio.run(
            collect(
                KafkaSettings(),
                topic,
                count=count,
                timeout_s=timeout,
                predicate=matches,
            )
        )
    except TimeoutError as e:
        raise click.ClickException(f"timed out: {e}") from e
    click.echo(
        f"    {len(found)} record(s) on {topic}" + (f" ({event_name})" if event_name else "")
    )


@main.command()
@click.option("--revision", default="head", show_default=True)
def migrate(revision: str) -> None:
    """Upgrade the SQL schema (MEDIACDR_DATABASE_URL) to REVISION with Alembic."""
    from services.config import DatabaseSettings
    from services.store.migrate import upgrade

    url = DatabaseSettings().database_url
    upgrade(url, revision)
    click.echo(f"schema at {revision}")


@main.command()
@click.option("--loglevel", default="INFO", show_default=True)
def projector(loglevel: str) -> None:
    """Run the projector: CDR and node facts → SQL (MEDIACDR_DATABASE_URL) until interrupted."""
    import logging

    from services.config import ProjectorSettings
    from services.core.errors import MediaCdrError
    from services.projector.service import run_projector

    logging.basicConfig(level=loglevel.upper(), format=LOG_FORMAT)
    try:
        run_projector(ProjectorSettings())
    except MediaCdrError as e:
        raise click.ClickException(str(e)) from e
    except _UNREACHABLE as e:
        raise _kafka_down(e) from e


@main.command()
@click.option(
    "--replace", is_flag=True, help="Empty an existing projection first (webhook tables are kept)."
)
def rebuild(replace: bool) -> None:
    """Replay the CDR and node-facts topics from the start into the SQL projection.

    Stop the projector first. Afterwards it continues from where the rebuild stopped.
    """
    from rich.console import Console
    from rich.progress import Progress

    from services.config import ProjectorSettings
    from services.core.errors import MediaCdrError
    from services.projector.rebuild import rebuild as run_rebuild

    with Progress(console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task("rebuilding", total=None)
        try:
            report = asyncio.run(
                run_rebuild(
                    ProjectorSettings(),
                    replace=replace,
                    on_total=lambda n: progress.update(task, total=n),
                    on_batch=lambda b: progress.advance(task, b.read),
                )
            )
        except MediaCdrError as e:
            raise click.ClickException(str(e)) from e
        except _UNREACHABLE as e:
            raise _kafka_down(e) from e
    t = report.totals
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(t.skipped.items())) or "none"
    click.echo(
        f"rebuilt from {t.read} records: {t.events} CDR events, {t.facts} node facts, "
        f"{t.duplicates} duplicates dropped, skipped: {skipped}"
    )


class _Instant(click.ParamType):
    """An instant: epoch milliseconds or ISO 8601 (``2026-11-25T10:00:00Z``)."""

    name = "instant"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        from datetime import UTC, datetime

        text = str(value).strip()
        if text.isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{text!r} is neither epoch ms nor ISO 8601", param, ctx)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)


@topics.command("backup")
@click.argument("topic")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="The backup file (JSON Lines).",
)
def topics_backup(topic: str, output: str) -> None:
    """Copy every record now on TOPIC (key, value, headers, timestamp, partition) to a file,
    for `topics restore`. Meant for the CDR and node-facts topics, kept forever."""
    from services.ops.backup import backup_topic

    settings = KafkaSettings()
    try:
        with Path(output).open("w", encoding="utf-8") as out:
            count = asyncio.run(backup_topic(settings, topic, out))
    except _UNREACHABLE as e:
        raise _kafka_down(e) from e
    click.echo(f"{count} records of {topic} in {output}")


@topics.command("restore")
@click.argument("backup", type=click.Path(exists=True, dir_okay=False))
@click.option("--topic", default=None, help="Restore into this topic (default: the one backed up).")
@click.option(
    "--redact-connection",
    "connections",
    multiple=True,
    help="Blank the personal fields of this connection's records (repeatable).",
)
@click.option(
    "--redact-before",
    type=_Instant(),
    default=None,
    help="Blank the personal fields of every record stamped before this instant.",
)
def topics_restore(
    backup: str, topic: str | None, connections: tuple[str, ...], redact_before: int | None
) -> None:
    """Write a backup's records into an empty topic with the same partition count, each to its
    partition, with its key, headers and timestamp (create the topic first: `topics create`).

    With --redact-…, participantJoined/participantLeft records lose their ip, location,
    platform, clientData and serverData on the way (docs/OPERATIONS.md, "Personal data")."""
    from services.core.errors import MediaCdrError
    from services.core.redaction import Redaction
    from services.ops.backup import read_backup, redacting, restore_topic

    settings = KafkaSettings()
    with Path(backup).open(encoding="utf-8") as lines:
        target = topic or read_backup(lines)[0]["topic"]
    redaction = Redaction(frozenset(connections), redact_before)
    try:
        with Path(backup).open(encoding="utf-8") as lines:
            report = asyncio.run(
                restore_topic(settings, target, lines, transform=redacting(redaction))
            )
    except MediaCdrError as e:
        raise click.ClickException(str(e)) from e
    except _UNREACHABLE as e:
        raise _kafka_down(e) from e
    click.echo(f"{report.written} records restored into {target}, {report.redacted} redacted")
    if report.moved:
        click.echo(
            f"{report.moved} records got another offset than in the backup: stored positions "
            "no longer match; run `mediacdr rebuild --replace` (docs/OPERATIONS.md)"
        )


@main.group()
def cdr() -> None:
    """The CDR log (the mediacdr.cdr topic)."""


@cdr.command("export")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="File to write; - is stdout.",
)
@click.option("--since", type=_Instant(), default=None, help="From this instant (inclusive).")
@click.option("--until", type=_Instant(), default=None, help="Up to this instant (exclusive).")
def cdr_export(output: str, since: int | None, until: int | None) -> None:
    """Write the CDR in OpenVidu's CDR file format (JSON Lines, event name as the root key),
    ordered by (timestamp, partition, offset), each event once."""
    from rich.console import Console
    from rich.progress import Progress

    from services.ops.export import export_cdr

    settings = KafkaSettings()
    with (
        click.open_file(output, "w", encoding="utf-8") as stream,
        Progress(console=Console(stderr=True), transient=True) as progress,
    ):
        task = progress.add_task("reading the CDR", total=None)
        try:
            report = asyncio.run(
                export_cdr(
                    settings,
                    settings.topic_cdr,
                    stream,
                    since_ms=since,
                    until_ms=until,
                    on_total=lambda n: progress.update(task, total=n),
                    on_read=lambda n: progress.advance(task, n),
                )
            )
        except _UNREACHABLE as e:
            raise _kafka_down(e) from e
    click.echo(
        f"{report.written} events written, {report.duplicates} repeats dropped"
        + (f", {report.unreadable} unreadable records skipped" if report.unreadable else ""),
        err=True,
    )


@main.command()
@click.argument("statement")
@click.option(
    "--wait-for-projector",
    is_flag=True,
    help="First wait until the projection has applied everything now on the topics.",
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait.")
def sql(statement: str, wait_for_projector: bool, timeout: float) -> None:
    """Run a read-only SQL STATEMENT on the projection (MEDIACDR_DATABASE_URL) and print it."""
    from rich.console import Console
    from rich.table import Table

    from services.config import ProjectorSettings
    from services.core.errors import MediaCdrError
    from services.ops.sql import query, wait_caught_up
    from services.projector.service import projection_store

    settings = ProjectorSettings()
    try:
        store = projection_store(settings)
    except MediaCdrError as e:
        raise click.ClickException(str(e)) from e
    try:
        if wait_for_projector:
            try:
                asyncio.run(wait_caught_up(settings, store, timeout))
            except TimeoutError as e:
                raise click.ClickException(str(e)) from e
            except _UNREACHABLE as e:
                raise _kafka_down(e) from e
        columns, rows = query(store.engine, statement)
    finally:
        store.engine.dispose()
    table = Table(*columns)
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console = Console()
    if not console.is_terminal:  # a pipe or a log: do not cut columns to 80 characters
        console = Console(width=240)
    console.print(table)
    click.echo(f"{len(rows)} row(s)")


@main.group(invoke_without_command=True)
@click.option("--loglevel", default="INFO", show_default=True)
@click.pass_context
def webhooks(ctx: click.Context, loglevel: str) -> None:
    """Run the webhooks service (no sub-command), or manage subscriptions."""
    if ctx.invoked_subcommand is not None:
        return
    import logging

    from services.config import WebhookSettings
    from services.core.errors import MediaCdrError
    from services.webhooks.service import run_webhooks

    logging.basicConfig(level=loglevel.upper(), format=LOG_FORMAT)
    try:
        run_webhooks(WebhookSettings())
    except (MediaCdrError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    except _UNREACHABLE as e:
        raise _kafka_down(e) from e


@contextlib.contextmanager
def _webhook_store() -> Iterator[Any]:
    """The subscription store, for one command; unknown ids become a clean error."""
    from services.config import WebhookSettings
    from services.core.errors import MediaCdrError
    from services.store.webhooks import UnknownSubscription
    from services.webhooks.service import webhook_store

    try:
        store = webhook_store(WebhookSettings())
    except MediaCdrError as e:
        raise click.ClickException(str(e)) from e
    try:
        yield store
    except UnknownSubscription as e:
        raise click.ClickException(str(e)) from e
    finally:
        store.engine.dispose()


@webhooks.command("add")
@click.argument("url")
@click.option("--id", "subscription_id", default=None, help="Your id for it (default wh_…).")
@click.option(
    "--secret/--no-secret",
    default=True,
    show_default=True,
    help="Sign requests with a new Standard Webhooks secret, shown once.",
)
@click.option("--header", "headers", multiple=True, help='"Name: Value", repeatable.')
@click.option("--event", "events", multiple=True, help="Only these CDR events (repeatable).")
def webhooks_add(
    url: str,
    subscription_id: str | None,
    secret: bool,
    headers: tuple[str, ...],
    events: tuple[str, ...],
) -> None:
    """Subscribe URL to the CDR; prints its id and, once only, its secret."""
    from services.config import WebhookPolicySettings
    from services.core.events import CDR_EVENTS
    from services.core.webhooks import new_secret
    from services.webhooks.sender import parse_header
    from services.webhooks.urls import InvalidWebhookUrl, checked_url

    try:
        checked_url(url, allow_private=WebhookPolicySettings().webhook_allow_private)
    except InvalidWebhookUrl as e:
        raise click.BadParameter(str(e), param_hint="URL") from e
    for line in headers:
        try:
            parse_header(line)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--header") from e
    unknown = sorted(set(events) - CDR_EVENTS)
    if unknown:
        raise click.BadParameter(f"not CDR events: {', '.join(unknown)}", param_hint="--event")
    from sqlalchemy.exc import IntegrityError

    with _webhook_store() as store:
        try:
            added = store.add(
                url,
                secret=new_secret() if secret else None,
                headers=headers,
                events=events or None,
                subscription_id=subscription_id,
            )
        except IntegrityError as e:
            raise click.ClickException(f"a subscription {subscription_id!r} exists already") from e
    click.echo(f"id      {added.id}")
    click.echo(f"url     {added.url}")
    if added.secret:
        click.echo(f"secret  {added.secret}")
        click.echo("        keep it now: it is not shown again")
    click.echo("It receives the CDR events written from now on.")


@webhooks.command("list")
def webhooks_list() -> None:
    """Subscriptions with their state and deliveries (secrets are never shown)."""
    with _webhook_store() as store:
        subs, counts = store.subscriptions(), store.counts()
    for s in subs:
        c = counts.get(s.id, {})
        state = "enabled" if s.enabled else f"disabled ({s.disabled_reason})"
        click.echo(f"{s.id}  {s.url}  {state}")
        click.echo(
            f"    events={','.join(s.events) if s.events else 'all'}"
            f"  signed={'yes' if s.secret else 'no'}  headers={len(s.headers)}"
            f"  pending={c.get('pending', 0)}  delivered={c.get('delivered', 0)}"
            f"  failed={c.get('failed', 0)}"
        )
    if not subs:
        click.echo("no subscriptions (MEDIACDR_WEBHOOK_ENDPOINT or `mediacdr webhooks add URL`)")


@webhooks.command("remove")
@click.argument("subscription_id")
def webhooks_remove(subscription_id: str) -> None:
    """Delete a subscription and its deliveries."""
    with _webhook_store() as store:
        store.remove(subscription_id)
    click.echo(f"removed {subscription_id}")


@webhooks.command("enable")
@click.argument("subscription_id")
def webhooks_enable(subscription_id: str) -> None:
    """Re-enable a subscription (after a 410); its waiting deliveries go out in order."""
    with _webhook_store() as store:
        store.set_enabled(subscription_id, True)
    click.echo(f"enabled {subscription_id}")


@webhooks.command("replay")
@click.argument("subscription_id")
@click.option("--since", type=_Instant(), default=None, help="Events from this instant.")
@click.option("--until", type=_Instant(), default=None, help="Events before this instant.")
@click.option("--event-id", default=None, help="Only this event (its webhook-id).")
def webhooks_replay(
    subscription_id: str, since: int | None, until: int | None, event_id: str | None
) -> None:
    """Send deliveries again, with the same webhook-id and a fresh signature."""
    from datetime import UTC, datetime

    def at(ms: int | None) -> datetime | None:
        return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)

    with _webhook_store() as store:
        count = store.replay(subscription_id, since=at(since), until=at(until), event_id=event_id)
    click.echo(f"{count} deliveries queued again for {subscription_id}")


@main.command()
@click.option("--loglevel", default="INFO", show_default=True)
def api(loglevel: str) -> None:
    """Run the HTTP API, ingest and dashboard on MEDIACDR_API_ADDR."""
    import logging

    import uvicorn

    from services.api.app import create_app
    from services.api.auth import is_loopback, split_addr
    from services.config import ApiSettings
    from services.core.errors import MediaCdrError
    from services.store.migrate import checked_engine

    logging.basicConfig(level=loglevel.upper(), format=LOG_FORMAT)
    settings = ApiSettings()
    try:
        host, port = split_addr(settings.api_addr)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    if not is_loopback(host) and not settings.api_secret:
        raise click.ClickException(
            f"refusing to serve on {host} without MEDIACDR_API_SECRET: anyone who can reach the "
            "address could read the CDR and manage webhooks. Set MEDIACDR_API_SECRET, or bind "
            "to 127.0.0.1 (MEDIACDR_API_ADDR)."
        )
    try:
        engine = checked_engine(
            settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
    except MediaCdrError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"mediacdr api on http://{settings.api_addr}/ (dashboard), docs at /docs")
    uvicorn.run(
        create_app(settings, engine),
        host=host,
        port=port,
        log_level=loglevel.lower(),
        access_log=False,
    )
