"""Event contracts: today's schemas against the committed snapshot (a schema registry's backward check).

A change that would break an existing consumer — a removed or renamed field, a
changed type, a new field without a default — must be a new event version
instead. To accept a compatible change, regenerate the snapshot:
``uv run python -m tests.backbone.test_contracts``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import distretto_shared.contracts  # noqa: F401  (registers every event type)
from distretto_shared.events import EVENT_TYPES, json_schemas
from distretto_shared.topics import CATALOGUE

SNAPSHOT = Path(__file__).resolve().parents[2] / "shared" / "contracts-snapshot.json"


def _current() -> dict[str, Any]:
    return {
        name: schema
        for name, schema in json_schemas().items()
        if name.startswith("distretto.") and not name.startswith(("distretto.example.", "distretto.bench."))
    }


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return _resolve(root["$defs"][ref.split("/")[-1]], root)
    return schema


def _type_of(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return sorted(json.dumps(_type_of(s, root), sort_keys=True) for s in schema["anyOf"])
    if schema.get("type") == "object" and "properties" in schema:
        return {k: _type_of(v, root) for k, v in schema["properties"].items()}
    if schema.get("type") == "array":
        return ["array", _type_of(schema.get("items", {}), root)]
    return schema.get("type", "any")


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why ``new`` would break a consumer written against ``old`` (empty: compatible)."""
    problems: list[str] = []
    for name, old_schema in old.items():
        if name not in new:
            problems.append(f"{name}: event type removed")
            continue
        new_schema = new[name]
        old_props, new_props = old_schema.get("properties", {}), new_schema.get("properties", {})
        for field, spec in old_props.items():
            if field not in new_props:
                problems.append(f"{name}.{field}: field removed")
            elif _type_of(spec, old_schema) != _type_of(new_props[field], new_schema):
                problems.append(f"{name}.{field}: type changed")
        added_required = set(new_schema.get("required", [])) - set(old_schema.get("required", []))
        for field in sorted(added_required):
            problems.append(f"{name}.{field}: new required field (give it a default, or make a new version)")
    return problems


def test_contracts_are_backward_compatible_with_the_snapshot() -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    assert breaking_changes(snapshot, _current()) == []


def test_every_event_in_use_is_in_the_snapshot() -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    missing = sorted(set(_current()) - set(snapshot))
    assert missing == [], f"new event types not in the snapshot (regenerate it): {missing}"


def test_the_compatibility_check_catches_breaking_changes() -> None:
    old = {"t": {"properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}}
    assert breaking_changes(old, old) == []
    assert breaking_changes(old, {}) == ["t: event type removed"]
    renamed = {"t": {"properties": {"a": {"type": "string"}, "c": {"type": "integer"}}, "required": ["a"]}}
    assert breaking_changes(old, renamed) == ["t.b: field removed"]
    retyped = {"t": {"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a"]}}
    assert breaking_changes(old, retyped) == ["t.a: type changed"]
    stricter = {"t": {"properties": {**old["t"]["properties"], "c": {"type": "string"}}, "required": ["a", "c"]}}
    assert "t.c: new required field" in breaking_changes(old, stricter)[0]


def test_every_event_names_a_catalogued_topic_and_a_versioned_type() -> None:
    for name, cls in EVENT_TYPES.items():
        if not name.startswith("distretto.") or name.startswith(("distretto.example.", "distretto.bench.")):
            continue
        assert name.rsplit(".", 1)[-1].startswith("v"), name
        assert cls.topic in CATALOGUE, f"{name} publishes to {cls.topic}, which is not in the topic catalogue"
        assert cls.subject_field in cls.model_fields, f"{name}: subject field {cls.subject_field} missing"


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(_current(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT} ({len(_current())} event types)")
