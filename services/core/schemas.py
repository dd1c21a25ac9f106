"""The JSON Schemas of schemas/, compiled once, by (kind, event).

The schema files are the published wire contract; the code validates against the same files
that users read, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema

__all__ = ["SCHEMA_DIR", "compiled_validator", "dataschema_urn", "load_schema", "schema_path"]

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
SCHEMA_VERSION = 1

Validator = Callable[[Mapping[str, Any]], Any]


def schema_path(kind: str, event: str, version: int = SCHEMA_VERSION) -> Path:
    return SCHEMA_DIR / kind / f"{event}.v{version}.schema.json"


def load_schema(kind: str, event: str, version: int = SCHEMA_VERSION) -> dict[str, Any]:
    with schema_path(kind, event, version).open(encoding="utf-8") as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


@cache
def compiled_validator(kind: str, event: str, version: int = SCHEMA_VERSION) -> Validator:
    """A fast validator that raises ``fastjsonschema.JsonSchemaException`` on a violation."""
    validate: Validator = fastjsonschema.compile(load_schema(kind, event, version))
    return validate


def dataschema_urn(event: str, version: int = SCHEMA_VERSION) -> str:
    """The ``ce_dataschema`` header value of an output record."""
    return f"urn:mediacdr:{event}:{version}"
