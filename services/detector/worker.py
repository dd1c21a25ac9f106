"""Running the detector: create the contract topics, then the Faust worker until a signal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust

from services.config import DetectorSettings
from services.detector.app import TABLES, build_detector, internal_topic_name
from services.detector.mass_disconnect import mass_disconnect_topics
from services.observability import metrics_server
from services.topics import INPUT_RETENTION, TopicSpec, contract_topics, ensure_topics

__all__ = ["internal_topics", "run_detector"]

_COMPACTED = {"cleanup.policy": "compact"}


def internal_topics(settings: DetectorSettings) -> list[TopicSpec]:
    """The detector's internal topics, created before Faust starts: Faust subscribes right after
    creating a topic itself and, on a fresh broker, may find it missing from the metadata and
    ignore it for the life of the worker."""
    n, app_id = settings.partitions, settings.detector_app_id
    specs = [TopicSpec(internal_topic_name(settings), n, dict(INPUT_RETENTION))]
    specs += [TopicSpec(f"{app_id}-{table}-changelog", n, dict(_COMPACTED)) for table in TABLES]
    specs.append(TopicSpec(f"{app_id}-__assignor-__leader", 1, dict(_COMPACTED)))
    return specs + mass_disconnect_topics(settings)


def run_detector(settings: DetectorSettings, loglevel: str = "WARNING") -> None:
    """Run the worker until a signal, with ``/health`` and ``/metrics`` on
    ``MEDIACDR_METRICS_ADDR`` (when set) from before it starts: unhealthy until the mark timer
    runs (after the first assignment and table recovery), and whenever it stops completing its
    ticks."""
    Path(settings.detector_data_dir).mkdir(parents=True, exist_ok=True)  # Faust makes one level
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    specs = contract_topics(settings) + internal_topics(settings)
    created = loop.run_until_complete(ensure_topics(settings, specs))
    if created:
        print(f"created topics: {', '.join(created)}", flush=True)
    detector = build_detector(settings)
    with metrics_server(settings.metrics_addr, detector.heartbeat.health) as server:
        if server is not None:  # the worker sets up logging later, at `loglevel`
            print(f"health and metrics on {server.url} (/health, /metrics)", flush=True)
        worker = faust.Worker(
            detector.app, loop=loop, loglevel=loglevel, quiet=True, redirect_stdouts=False
        )
        worker.execute_from_commandline()
