"""Creating the contract topics (CONTRACT §2) with the configured partition count.

Partitions are fixed for the life of a deployment (Faust tables cannot follow a change), so an
existing topic with another count is reported, never altered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from services.config import KafkaSettings
from services.core.errors import BrokerUnavailable, ConfigurationError

__all__ = ["TopicSpec", "contract_topics", "ensure_topics"]

_KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def contract_topics(settings: KafkaSettings) -> list[TopicSpec]:
    """The six topics; the CDR and node facts keep their records forever."""
    n = settings.partitions
    return [
        TopicSpec(settings.topic_liveness, n, {}),
        TopicSpec(settings.topic_sessions, n, {}),
        TopicSpec(settings.topic_cdr, n, dict(_KEEP_FOREVER)),
        TopicSpec(settings.topic_nodes, n, dict(_KEEP_FOREVER)),
        TopicSpec(settings.topic_notifications, n, {}),
        TopicSpec(settings.topic_deadletter, n, {}),
    ]


async def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create the missing topics; returns the names created. Idempotent."""
    wanted = specs if specs is not None else contract_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await admin.start()
    except KafkaError as e:
        raise BrokerUnavailable(f"Kafka at {settings.kafka_bootstrap}: {e}") from e
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
