"""`topics backup` and `topics restore` on a real broker: every record comes back to its
partition, in order, with its key, value, headers and timestamp."""

from __future__ import annotations

import asyncio
import io
import json
import uuid

import pytest

from services.config import KafkaSettings
from services.core.errors import ConfigurationError
from services.core.redaction import Redaction
from services.ops.backup import backup_topic, redacting, restore_topic
from services.ops.tail import collect
from services.topics import TopicSpec, ensure_topics
from tests.support.kafka import produce_many

PARTITIONS = 3
T0 = 1_700_000_000_000


def _topic(bootstrap: str, partitions: int = PARTITIONS) -> str:
    name = f"backup.{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(kafka_bootstrap=bootstrap)
    asyncio.run(ensure_topics(settings, [TopicSpec(name, partitions, {})]))
    return name


def _everything(bootstrap: str, topic: str, count: int) -> list[tuple[object, ...]]:
    found = asyncio.run(collect(bootstrap, topic, count=count, timeout_s=60))
    return sorted((r.partition, r.offset, r.timestamp_ms, r.key, r.value, r.headers) for r in found)


def test_a_restored_topic_equals_the_one_backed_up(kafka_bootstrap: str) -> None:
    source = _topic(kafka_bootstrap)
    records = [
        (
            source,
            f"key-{i % 4}".encode() if i != 5 else None,
            b'{"event":"x","n":%d}' % i if i != 7 else None,
            [("ce_id", f"id-{i}".encode()), ("bin", bytes([0, 255, i]))],
            T0 + 1000 * (9 - i),  # timestamps need not follow offsets
        )
        for i in range(12)
    ]
    asyncio.run(produce_many(kafka_bootstrap, records))
    backup = io.StringIO()
    assert asyncio.run(backup_topic(kafka_bootstrap, source, backup)) == 12

    target = _topic(kafka_bootstrap)
    lines = backup.getvalue().splitlines()
    report = asyncio.run(restore_topic(kafka_bootstrap, target, lines))
    assert (report.written, report.redacted, report.moved) == (12, 0, 0)  # offsets kept
    assert _everything(kafka_bootstrap, target, 12) == _everything(kafka_bootstrap, source, 12)

    with pytest.raises(ConfigurationError, match="not empty"):
        asyncio.run(restore_topic(kafka_bootstrap, target, lines))
    with pytest.raises(ConfigurationError, match="partitions"):
        asyncio.run(restore_topic(kafka_bootstrap, _topic(kafka_bootstrap, 2), lines))


def test_a_restore_can_blank_a_persons_fields_and_keeps_everything_else(
    kafka_bootstrap: str,
) -> None:
    source = _topic(kafka_bootstrap)
    people = {"con_A": "10.1.1.1", "con_B": "10.2.2.2"}
    records = [
        (
            source,
            b"ses_1",
            json.dumps(
                {
                    "event": event,
                    "timestamp": T0 + i,
                    "sessionId": "ses_1",
                    "connectionId": connection,
                    "location": "Madrid, Spain",
                    "ip": ip,
                    "platform": "Chrome 120",
                    "clientData": f"user {connection}",
                    "serverData": "{}",
                },
                separators=(",", ":"),
            ).encode(),
            [("ce_id", f"id-{i}".encode())],
            T0 + i,
        )
        for i, (event, (connection, ip)) in enumerate(
            (e, p) for e in ("participantJoined", "participantLeft") for p in people.items()
        )
    ]
    asyncio.run(produce_many(kafka_bootstrap, records))
    backup = io.StringIO()
    asyncio.run(backup_topic(kafka_bootstrap, source, backup))
    target = _topic(kafka_bootstrap)
    erase_a = redacting(Redaction(connections={"con_A"}))
    lines = backup.getvalue().splitlines()
    report = asyncio.run(restore_topic(kafka_bootstrap, target, lines, transform=erase_a))
    assert (report.written, report.redacted, report.moved) == (4, 2, 0)
    restored = asyncio.run(collect(kafka_bootstrap, target, count=4, timeout_s=60))
    bodies = {(r.headers[0][1], json.loads(r.value or b"")["connectionId"]): r for r in restored}
    for (ce_id, connection), record in bodies.items():
        body = json.loads(record.value or b"")
        personal = [body[k] for k in ("ip", "location", "platform", "clientData", "serverData")]
        if connection == "con_A":
            assert personal == ["", "", "", "", ""], ce_id
        else:
            assert body["ip"] == people[connection]
        assert body["timestamp"] == record.timestamp_ms  # the rest is as it was
