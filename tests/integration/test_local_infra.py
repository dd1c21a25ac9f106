"""The local servers really work: Kafka keeps records, keys and headers; PostgreSQL keeps rows.

These guard the fixtures every other integration test stands on, so a broken broker or cluster
set-up shows up here with a plain message rather than as odd failures elsewhere.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.localdev.kafka import LocalKafka

PARTITIONS = 3
Record = tuple[int, bytes, bytes, list[tuple[str, bytes]]]


def _records() -> list[Record]:
    """(partition, key, value, headers), spread over every partition, several per partition."""
    return [
        (
            i % PARTITIONS,
            f"key-{i}".encode(),
            f"value-{i}".encode(),
            [("trace-id", f"t{i}".encode()), ("schema", b"test/1")],
        )
        for i in range(9)
    ]


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    assert [error[1] for error in response.topic_errors] == [0]


async def _produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, key, value, headers in records:
            await producer.send_and_wait(
                topic, value, key=key, partition=partition, headers=headers
            )
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int) -> list[Record]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        received: list[Record] = []
        async with asyncio.timeout(30):
            while len(received) < count:
                message = await consumer.getone()
                received.append(
                    (message.partition, message.key, message.value, list(message.headers))
                )
        return received
    finally:
        await consumer.stop()


async def _round_trip(bootstrap: str, records: list[Record]) -> list[Record]:
    topic = f"local-infra-{uuid.uuid4().hex[:12]}"
    await _create_topic(bootstrap, topic)
    await _produce(bootstrap, topic, records)
    return await _consume(bootstrap, topic, len(records))


def test_kafka_keeps_records_keys_headers_and_partition_order(kafka_bootstrap: str) -> None:
    sent = _records()
    received = asyncio.run(_round_trip(kafka_bootstrap, sent))
    for partition in range(PARTITIONS):
        assert [r for r in received if r[0] == partition] == [r for r in sent if r[0] == partition]
    assert len(received) == len(sent)


def test_postgres_writes_and_reads_a_row(postgres_url: str) -> None:
    metadata = sa.MetaData()
    probe = sa.Table(
        "local_infra_probe",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    engine = sa.create_engine(postgres_url)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(probe), [{"id": 1, "label": "hello", "payload": {"n": 1}}])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(probe.c.label, probe.c.payload)).all()
        assert [tuple(row) for row in rows] == [("hello", {"n": 1})]
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_status_of_a_never_started_broker_says_not_running(tmp_path: Path) -> None:
    status = LocalKafka(tmp_path, tmp_path / "libs").status()
    assert (status.running, status.pid, status.bootstrap) == (False, None, None)
