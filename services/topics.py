"""Creating the topics (CONTRACT §2) with the configured partition count, retention and cleanup
policy, and describing them as the broker has them.

Partitions are fixed for the life of a deployment (Faust tables cannot follow a change), so an
existing topic with another count is reported, never altered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from services.config import KafkaSettings
from services.core.errors import BrokerUnavailable, ConfigurationError
from services.kafka_clients import new_admin

__all__ = [
    "DESCRIBED_CONFIGS",
    "INPUT_RETENTION",
    "KEEP_FOREVER",
    "TopicSpec",
    "TopicState",
    "contract_topics",
    "describe_topics",
    "ensure_topics",
]

DAY_MS = 86_400_000
#: The inputs (and the detector's re-keyed copy of them) must outlive the longest detector
#: downtime: what is deleted before the detector reads it is never judged. A week by default.
INPUT_RETENTION = {"retention.ms": str(7 * DAY_MS)}
#: The CDR and the node facts are the record of what happened: never deleted.
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
_NOTICES = {"retention.ms": str(7 * DAY_MS)}
_DEAD_LETTERS = {"retention.ms": str(30 * DAY_MS)}
#: What `describe_topics` reports of each topic's configuration.
DESCRIBED_CONFIGS = ("retention.ms", "retention.bytes", "cleanup.policy")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def contract_topics(settings: KafkaSettings) -> list[TopicSpec]:
    """The six topics: inputs kept a week, the CDR and node facts forever, client notices a
    week, dead letters thirty days (docs/OPERATIONS.md, "Topics")."""
    n = settings.partitions
    return [
        TopicSpec(settings.topic_liveness, n, dict(INPUT_RETENTION)),
        TopicSpec(settings.topic_sessions, n, dict(INPUT_RETENTION)),
        TopicSpec(settings.topic_cdr, n, dict(KEEP_FOREVER)),
        TopicSpec(settings.topic_nodes, n, dict(KEEP_FOREVER)),
        TopicSpec(settings.topic_notifications, n, dict(_NOTICES)),
        TopicSpec(settings.topic_deadletter, n, dict(_DEAD_LETTERS)),
    ]


async def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create the missing topics; returns the names created. Idempotent."""
    wanted = specs if specs is not None else contract_topics(settings)
    async with _started_admin(settings) as admin:
        try:
            existing = await _partition_counts(admin)
            _check_partitions(wanted, existing)
            missing = [s for s in wanted if s.name not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(
                            s.name,
                            s.partitions,
                            settings.replication_factor,
                            topic_configs=s.config,
                        )
                        for s in missing
                    ]
                )
                await _wait_until_led(admin, [s.name for s in missing])
            return [s.name for s in missing]
        except KafkaError as e:
            raise BrokerUnavailable(f"creating topics on {settings.kafka_bootstrap}: {e}") from e


@asynccontextmanager
async def _started_admin(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit; a broker that cannot be reached is
    ``BrokerUnavailable``."""
    admin = new_admin(settings)
    try:
        await admin.start()
    except KafkaError as e:
        raise BrokerUnavailable(f"Kafka at {settings.kafka_bootstrap}: {e}") from e
    try:
        yield admin
    finally:
        await admin.close()


async def _wait_until_led(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Topic creation is asynchronous in the broker: return once every partition has a leader."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        described = await admin.describe_topics(names)
        if all(_is_led(d) for d in described):
            return
        await asyncio.sleep(0.1)  # polling the broker's metadata; there is no event to await
    raise BrokerUnavailable(f"topics {names} have no leader after 30 s")


def _is_led(described: dict[str, Any]) -> bool:
    partitions = described.get("partitions") or []
    return (
        described.get("error_code", 0) == 0
        and bool(partitions)
        and all(p.get("leader", -1) >= 0 for p in partitions)
    )


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    names = await admin.list_topics()
    if not names:
        return {}
    described = await admin.describe_topics(list(names))
    return {d["topic"]: len(d["partitions"]) for d in described}


def _check_partitions(wanted: list[TopicSpec], existing: dict[str, int]) -> None:
    for spec in wanted:
        count = existing.get(spec.name)
        if count is not None and count != spec.partitions:
            raise ConfigurationError(
                f"topic {spec.name} has {count} partitions, MEDIACDR_PARTITIONS says "
                f"{spec.partitions}; partitions are fixed for the life of a deployment"
            )


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker has it: partitions, replicas and the configs mediacdr sets."""

    name: str
    partitions: int | None  # None: the topic does not exist
    replicas: int | None
    config: dict[str, str]


async def describe_topics(settings: KafkaSettings, names: list[str]) -> list[TopicState]:
    """Each topic's partitions, replication and ``DESCRIBED_CONFIGS`` (defaults included)."""
    async with _started_admin(settings) as admin:
        try:
            existing = set(await admin.list_topics())
            present = [n for n in names if n in existing]
            described = await admin.describe_topics(present) if present else []
            configs = await _topic_configs(admin, present)
        except KafkaError as e:
            raise BrokerUnavailable(f"describing topics on {settings.kafka_bootstrap}: {e}") from e
    layout = {d["topic"]: d["partitions"] for d in described}
    states = []
    for name in names:
        partitions = layout.get(name)
        if partitions is None:
            states.append(TopicState(name, None, None, {}))
            continue
        replicas = min((len(p.get("replicas", [])) for p in partitions), default=0)
        states.append(TopicState(name, len(partitions), replicas, configs.get(name, {})))
    return states


async def _topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    only = dict.fromkeys(DESCRIBED_CONFIGS)  # the keys filter what the broker answers
    wanted = [ConfigResource(ConfigResourceType.TOPIC, n, only) for n in names]
    found: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(wanted):
        for resource in response.resources:
            _error, _message, _type, name, entries = resource[:5]
            found[name] = {entry[0]: entry[1] for entry in entries if entry[0] in DESCRIBED_CONFIGS}
    return found
