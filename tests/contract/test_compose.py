"""docker-compose.yml cannot run here (no Docker engine); check it against the CLI, the settings
classes and .env.example instead.

Interpolation is resolved the way Compose does it (``${VAR}``, ``${VAR:-default}``,
``${VAR:?message}``) from .env.example, with a stand-in for the secrets it leaves empty, so each
service's environment is loaded by the settings class its command reads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from pydantic_settings import BaseSettings

from services.cli import main
from services.config import (
    ApiSettings,
    DatabaseSettings,
    DetectorSettings,
    ProjectorSettings,
    WebhookSettings,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
EXAMPLE_ENV = ROOT / ".env.example"
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)
#: The settings class each service command builds (services/cli.py).
SETTINGS: dict[tuple[str, ...], type[BaseSettings]] = {
    ("detector",): DetectorSettings,
    ("projector",): ProjectorSettings,
    ("webhooks",): WebhookSettings,
    ("api",): ApiSettings,
    ("migrate",): DatabaseSettings,
    ("topics", "create"): DetectorSettings,  # the detector's internal topics too
}
SECRET_STAND_IN = "stand-in-secret"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
    return loaded


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def _mediacdr_services() -> dict[str, Any]:
    return {
        name: spec
        for name, spec in _services().items()
        if spec.get("image", "").startswith("mediacdr") or "build" in spec
    }


def _example_env() -> dict[str, str]:
    found = {}
    for line in EXAMPLE_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


def _interpolate(value: str, env: dict[str, str]) -> str:
    def resolve(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else str(current)
        if op in (":?", "?") and not current:
            return SECRET_STAND_IN  # a value the operator must set; .env.example leaves it empty
        return current or ""

    return INTERPOLATION.sub(resolve, value)


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    env = _example_env()
    raw = spec.get("environment") or {}
    return {key: _interpolate(str(value), env) for key, value in raw.items()}


def _command_path(argv: list[str]) -> tuple[tuple[str, ...], click.Command, list[str]]:
    """The sub-command words, the command they name, and the arguments left for it."""
    command: click.Command = main
    path: list[str] = []
    ctx = click.Context(main)
    for i, word in enumerate(argv):
        if not isinstance(command, click.Group) or word.startswith("-"):
            return tuple(path), command, argv[i:]
        sub = command.get_command(ctx, word)
        assert sub is not None, f"`mediacdr {' '.join(argv)}`: no command {word!r}"
        command = sub
        path.append(word)
    return tuple(path), command, []


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def _is_one_shot(spec: dict[str, Any]) -> bool:
    return spec.get("restart") == "no"


def test_every_mediacdr_service_runs_an_existing_command_with_valid_options() -> None:
    services = _mediacdr_services()
    assert {"migrate", "topics", "projector", "webhooks", "api"} <= set(services)
    for name, spec in services.items():
        path, command, rest = _command_path(list(spec["command"]))
        runs_itself = isinstance(command, click.Group) and command.invoke_without_command
        assert runs_itself or not isinstance(command, click.Group), f"{name}: a group"
        assert path in SETTINGS, f"{name}: `mediacdr {' '.join(path)}` has no settings entry here"
        command.make_context(" ".join(path), list(rest))  # raises on an unknown option


def test_two_detector_workers_in_one_group_each_with_its_own_state_and_port() -> None:
    workers = {n: s for n, s in _mediacdr_services().items() if s["command"][0] == "detector"}
    assert len(workers) >= 2
    settings = {n: _settings_of(s) for n, s in workers.items()}
    assert len({s.detector_app_id for s in settings.values()}) == 1  # one consumer group
    volumes = [spec["volumes"][0].split(":")[0] for spec in workers.values()]
    assert len(set(volumes)) == len(workers), "each worker keeps its own data directory"
    ports = [spec["ports"][0] for spec in workers.values()]
    assert len(set(ports)) == len(workers)


def _settings_of(spec: dict[str, Any]) -> Any:
    path, _, _ = _command_path(list(spec["command"]))
    return _load(SETTINGS[path], _environment(spec))


def _load(cls: type[BaseSettings], env: dict[str, str]) -> BaseSettings:
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("MEDIACDR_")]:
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        return cls()


def test_every_environment_variable_is_a_setting_of_the_command_it_configures() -> None:
    for name, spec in _mediacdr_services().items():
        path, _, _ = _command_path(list(spec["command"]))
        cls = SETTINGS[path]
        known = {f"MEDIACDR_{field.upper()}" for field in cls.model_fields}
        env = _environment(spec)
        unknown = set(env) - known
        assert not unknown, f"{name}: {sorted(unknown)} are not settings of {cls.__name__}"
        loaded = _load(cls, env)  # every value parses (types, ranges, JSON lists)
        for key, value in env.items():
            field = key.removeprefix("MEDIACDR_").lower()
            assert getattr(loaded, field) is not None or value == "", f"{name}: {key}"


def test_the_services_reach_kafka_and_postgresql_by_their_service_names() -> None:
    services = _services()
    for name, spec in _mediacdr_services().items():
        env = _environment(spec)
        if "MEDIACDR_KAFKA_BOOTSTRAP" in env:
            host = env["MEDIACDR_KAFKA_BOOTSTRAP"].split(":")[0]
            assert host in services, f"{name}: {host}"
        if "MEDIACDR_DATABASE_URL" in env:
            url = urlsplit(env["MEDIACDR_DATABASE_URL"])
            assert url.scheme == "postgresql+psycopg", name
            assert url.hostname in services, name
            assert url.password == SECRET_STAND_IN, f"{name}: the password must come from .env"


def test_dependencies_wait_for_health_migrations_and_topics() -> None:
    services = _services()
    for name, spec in services.items():
        for target, dependency in (spec.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on a missing {target}"
            expected = (
                "service_completed_successfully"
                if _is_one_shot(services[target])
                else "service_healthy"
            )
            assert dependency["condition"] == expected, f"{name} → {target}"
    for name, spec in _mediacdr_services().items():
        env, needs = _environment(spec), set(spec.get("depends_on") or {})
        if "MEDIACDR_KAFKA_BOOTSTRAP" in env:
            assert "kafka" in needs, name
            if name != "topics":
                assert "topics" in needs, f"{name} must wait until the topics exist"
        if "MEDIACDR_DATABASE_URL" in env:
            assert ("postgres" if name == "migrate" else "migrate") in needs, name


def test_state_lives_in_named_volumes() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    services = compose["services"]
    mounts = {
        name: [v.split(":") for v in spec.get("volumes", [])] for name, spec in services.items()
    }
    assert ["kafka-data", "/var/lib/kafka/data"] in mounts["kafka"]
    assert services["kafka"]["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert ["postgres-data", "/var/lib/postgresql/data"] in mounts["postgres"]
    used = [source for volumes in mounts.values() for source, *_ in volumes]
    assert set(used) == declared, "every named volume is declared, and used"
    assert len(used) == len(set(used)), "no two services share a volume"
    for name, spec in _mediacdr_services().items():
        data_dir = _environment(spec).get("MEDIACDR_DETECTOR_DATA_DIR")
        if spec["command"][0] == "detector":
            assert data_dir is not None, name
            assert any(data_dir.startswith(target) for _, target in mounts[name]), name


def test_every_long_running_service_has_a_healthcheck_on_its_own_port() -> None:
    for name, spec in _services().items():
        if _is_one_shot(spec):
            assert "healthcheck" not in spec, name
            continue
        assert spec.get("restart") == "unless-stopped", name
        assert spec["healthcheck"]["test"], name
    for name, spec in _mediacdr_services().items():
        if _is_one_shot(spec):
            continue
        env = _environment(spec)
        addr = env.get("MEDIACDR_METRICS_ADDR") or env["MEDIACDR_API_ADDR"]
        check = " ".join(spec["healthcheck"]["test"])
        assert f"http://127.0.0.1:{_port(addr)}/health" in check, name


def test_the_example_env_file_covers_every_interpolated_variable() -> None:
    used = {m["name"] for m in INTERPOLATION.finditer(COMPOSE_TEXT)}
    example = _example_env()
    assert used - set(example) == set(), "missing from .env.example"
    assert set(example) - used == set(), "in .env.example but not used by docker-compose.yml"
    required = {m["name"] for m in INTERPOLATION.finditer(COMPOSE_TEXT) if m["op"] == ":?"}
    assert all(example[name] == "" for name in required), "secrets are not shipped"


def test_infrastructure_images_are_pinned() -> None:
    services = _services()
    assert services["kafka"]["image"].startswith("apache/kafka:4.1.")
    assert services["postgres"]["image"] == "postgres:16"
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "CLUSTER_ID" in kafka  # the image refuses to format KRaft storage without one


def test_dockerfile_entrypoint_is_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mediacdr"]' in dockerfile
    for path in ("services", "schemas", "migrations", "alembic.ini", "constraints.txt"):
        assert path in dockerfile, path
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
