"""ops/prometheus/alerts.yml against the metrics the services define (CONTRACT §14: metric names
are fixed, prefixed ``mediacdr_``, and listed in docs/OPERATIONS.md).

An alert on a name no service exports would never fire, silently; so every ``mediacdr_…`` name in
an expression must be a series the code produces (counters as ``_total``, histograms as
``_bucket``/``_sum``/``_count``).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import services.detector.metrics
import services.observability
import services.projector.metrics
import services.webhooks.metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
MODULES: tuple[ModuleType, ...] = (
    services.detector.metrics,
    services.projector.metrics,
    services.webhooks.metrics,
    services.observability,
)
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
NAME = re.compile(r"\bmediacdr_\w+")
DURATION = re.compile(r"^\d+[smhdwy]$")
#: What the services define, by family name and type (fixed: changing one breaks dashboards).
EXPECTED = {
    "mediacdr_detector_events_in": "counter",
    "mediacdr_detector_events_out": "counter",
    "mediacdr_deadletters": "counter",
    "mediacdr_open_incidents": "gauge",
    "mediacdr_running_nodes": "gauge",
    "mediacdr_mass_disconnects": "counter",
    "mediacdr_crash_decision_delay_seconds": "histogram",
    "mediacdr_producer_clock_skew_seconds": "histogram",
    "mediacdr_detector_table_recovery_seconds": "gauge",
    "mediacdr_consumer_lag": "gauge",
    "mediacdr_projector_records": "counter",
    "mediacdr_projector_batch_seconds": "histogram",
    "mediacdr_webhook_deliveries": "counter",
    "mediacdr_webhook_attempt_seconds": "histogram",
    "mediacdr_webhook_queue_depth": "gauge",
    "mediacdr_webhook_enqueued": "counter",
}


def defined_families() -> dict[str, str]:
    """Family name → type of every metric object the service modules define."""
    found: dict[str, str] = {}
    for module in MODULES:
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                for family in value.describe():
                    found[family.name] = family.type
    return found


def series_names() -> set[str]:
    return {name + suffix for name, kind in defined_families().items() for suffix in SUFFIXES[kind]}


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_the_services_define_the_documented_metric_names() -> None:
    assert defined_families() == EXPECTED


def test_every_metric_is_in_the_operations_doc() -> None:
    doc = OPERATIONS.read_text()
    table = doc[doc.index("## Metrics") :]
    for name, kind in EXPECTED.items():
        exposed = name + "_total" if kind == "counter" else name
        assert f"`{exposed}" in table, f"docs/OPERATIONS.md does not list {exposed}"
    assert "MEDIACDR_METRICS_ADDR" in doc


def test_the_rule_file_is_a_prometheus_rule_file() -> None:
    loaded = yaml.safe_load(RULES.read_text())
    assert set(loaded) == {"groups"}
    names = [group["name"] for group in loaded["groups"]]
    assert len(names) == len(set(names)), "group names must be unique"
    alerts = []
    for group in loaded["groups"]:
        assert set(group) <= {"name", "interval", "rules"}, group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert isinstance(rule["expr"], str)
            assert rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            if "for" in rule:
                assert DURATION.match(rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts)), "alert names must be unique"


def test_expressions_use_only_metrics_the_code_defines() -> None:
    known = series_names()
    for rule in rules():
        used = set(NAME.findall(rule["expr"]))
        assert used or re.search(r"\bup\b", rule["expr"]), f"{rule['alert']} uses no metric"
        unknown = used - known
        assert not unknown, f"{rule['alert']} uses undefined {sorted(unknown)}"


@pytest.mark.parametrize(
    ("topic", "names"),
    [
        ("crash decisions slower than 250 ms", {"mediacdr_crash_decision_delay_seconds_bucket"}),
        ("dead letters", {"mediacdr_deadletters_total"}),
        ("node crashes", {"mediacdr_detector_events_out_total"}),
        ("mass disconnections", {"mediacdr_mass_disconnects_total"}),
        ("projector lag", {"mediacdr_consumer_lag"}),
        ("webhook queue", {"mediacdr_webhook_queue_depth"}),
        ("webhook failures", {"mediacdr_webhook_deliveries_total"}),
    ],
)
def test_the_operational_risks_have_an_alert(topic: str, names: set[str]) -> None:
    used = set().union(*(NAME.findall(rule["expr"]) for rule in rules()))
    assert names <= used, topic


def test_a_service_down_alert_exists() -> None:
    assert any(re.search(r"\bup\b.*== 0", rule["expr"]) for rule in rules())
