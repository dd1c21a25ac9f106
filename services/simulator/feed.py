"""Producing simulator records to the input topics."""

from __future__ import annotations

from services.config import KafkaSettings
from services.kafka_clients import new_producer
from services.simulator.samples import sample_records

__all__ = ["feed_samples"]


async def feed_samples(settings: KafkaSettings, now_ms: int) -> list[str]:
    """Send the sample records; returns one human line per record."""
    topics = {"liveness": settings.topic_liveness, "sessions": settings.topic_sessions}
    producer = new_producer(settings, acks="all")
    await producer.start()
    lines = []
    try:
        for record in sample_records(now_ms):
            topic = topics[record.topic_role]
            await producer.send_and_wait(topic, record.value, key=record.key)
            lines.append(f"{topic:<20} {record.note}")
    finally:
        await producer.stop()
    return lines
