"""The topics the detector creates before Faust starts are exactly the ones Faust uses.

Faust may ignore a topic it creates itself on a fresh broker (it is not yet in the metadata when
the worker subscribes), so `internal_topics` must name every internal and changelog topic.
"""

from __future__ import annotations

from services.config import DetectorSettings
from services.detector.app import build_app, internal_topic_name
from services.detector.worker import internal_topics


def test_every_table_changelog_and_the_internal_topic_are_precreated() -> None:
    settings = DetectorSettings(detector_app_id="mediacdr-contract", partitions=5)
    app = build_app(settings)
    changelogs = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    specs = {spec.name: spec for spec in internal_topics(settings)}
    assert changelogs | {internal_topic_name(settings)} <= set(specs)
    assert all(specs[name].partitions == 5 for name in changelogs)
    assert all(specs[name].config == {"cleanup.policy": "compact"} for name in changelogs)
    assert all(name.startswith("mediacdr-") for name in specs)
