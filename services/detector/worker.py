"""Running the detector: create the contract topics, then the Faust worker until a signal."""

from __future__ import annotations

import asyncio

import faust

from services.config import DetectorSettings
from services.detector.app import build_app
from services.topics import ensure_topics

__all__ = ["run_detector"]


def run_detector(settings: DetectorSettings, loglevel: str = "WARNING") -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    created = loop.run_until_complete(ensure_topics(settings))
    if created:
        print(f"created topics: {', '.join(created)}", flush=True)
    app = build_app(settings)
    worker = faust.Worker(app, loop=loop, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
