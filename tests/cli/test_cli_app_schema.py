"""schemas/application.schema.json and the YAML loader describe the same fields and types."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from flame_agents.cli import app_yaml
from flame_agents.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "application.schema.json"

# How the schema must express each loader field kind.
_EXPECTED_TYPE: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "string_list": {"type": "array", "items": {"type": "string"}},
    "string_map": {"type": "object", "additionalProperties": {"type": "string"}},
    "uint32": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "seconds": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    "shim": {"type": "string"},
    "schema": {"type": "object", "additionalProperties": False},
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The committed JSON Schema."""
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return data


def test_same_field_names_at_every_level(schema: dict[str, Any]) -> None:
    """Top level, metadata, spec and spec.schema list exactly the loader's fields."""
    spec = schema["properties"]["spec"]
    assert tuple(schema["properties"]) == app_yaml.TOP_LEVEL_FIELDS
    assert tuple(schema["properties"]["metadata"]["properties"]) == app_yaml.METADATA_FIELDS
    assert set(spec["properties"]) == set(app_yaml.SPEC_FIELDS)
    assert tuple(spec["properties"]["schema"]["properties"]) == app_yaml.SCHEMA_FIELDS


def test_unknown_fields_are_rejected_at_every_level(schema: dict[str, Any]) -> None:
    """Like the loader, the schema allows no extra fields anywhere."""
    spec = schema["properties"]["spec"]
    for node in (schema, schema["properties"]["metadata"], spec, spec["properties"]["schema"]):
        assert node["additionalProperties"] is False
    assert schema["required"] == ["metadata"]
    assert schema["properties"]["metadata"]["required"] == ["name"]


def test_each_spec_field_has_the_loader_type(schema: dict[str, Any]) -> None:
    """Every spec field's JSON type (and bounds) matches the loader's check for it."""
    props = schema["properties"]["spec"]["properties"]
    for name, kind in app_yaml.SPEC_FIELDS.items():
        for key, value in _EXPECTED_TYPE[kind].items():
            assert props[name][key] == value, f"{name}.{key}"


@pytest.mark.parametrize("shim", ["Host", "host", "HOST", "Wasm", "wasm", "WASM", "docker", ""])
def test_shim_pattern_matches_the_loader(schema: dict[str, Any], shim: str) -> None:
    """The schema's shim pattern accepts exactly what the loader accepts."""
    pattern = schema["properties"]["spec"]["properties"]["shim"]["pattern"]
    doc = f"metadata: {{name: a}}\nspec: {{shim: '{shim}'}}\n"
    try:
        app_yaml.load_app_text(doc)
        loader_ok = True
    except ConfigError:
        loader_ok = False
    assert bool(re.fullmatch(pattern, shim)) == loader_ok


@pytest.mark.parametrize("name", ["echo-app", "a", "a.b_c-1", "-x", ".x", "a..b", "a/b", "x" * 254])
def test_name_pattern_matches_the_loader(schema: dict[str, Any], name: str) -> None:
    """The schema's name rule accepts exactly the names the loader accepts."""
    rule = schema["properties"]["metadata"]["properties"]["name"]
    schema_ok = bool(re.fullmatch(rule["pattern"], name)) and not re.search(
        rule["not"]["pattern"], name
    )
    try:
        app_yaml.load_app_text(json.dumps({"metadata": {"name": name}}))
        loader_ok = True
    except ConfigError:
        loader_ok = False
    assert schema_ok == loader_ok
