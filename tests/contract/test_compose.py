"""docker-compose.yml cannot run here (no Docker engine); check it against the CLI instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from services.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _mediacdr_services() -> dict[str, Any]:
    return {
        name: spec
        for name, spec in _compose()["services"].items()
        if spec.get("image", "").startswith("mediacdr") or "build" in spec
    }


def _resolve(argv: list[str]) -> click.Command:
    command: click.Command = main
    ctx = click.Context(main)
    for word in argv:
        if not isinstance(command, click.Group) or word.startswith("-"):
            break
        sub = command.get_command(ctx, word)
        assert sub is not None, f"`mediacdr {' '.join(argv)}`: no command {word!r}"
        command = sub
    return command


def test_every_mediacdr_service_runs_an_existing_command() -> None:
    services = _mediacdr_services()
    assert {"migrate", "detector", "projector", "webhooks"} <= set(services)
    for name, spec in services.items():
        command = _resolve(list(spec["command"]))
        runs_itself = isinstance(command, click.Group) and command.invoke_without_command
        assert runs_itself or not isinstance(command, click.Group), (
            f"{name}: {spec['command']} is a group"
        )


def test_infrastructure_images_are_pinned() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.1.")
    assert services["postgres"]["image"] == "postgres:16"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_services_wait_for_migrations_and_a_healthy_broker() -> None:
    detector = _compose()["services"]["detector"]
    assert detector["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert detector["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert detector["environment"]["MEDIACDR_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_dockerfile_entrypoint_is_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mediacdr"]' in dockerfile
    for path in ("services", "schemas", "migrations", "alembic.ini", "constraints.txt"):
        assert path in dockerfile, path
