"""The API conventions (docs/api-conventions.md) as checks on an OpenAPI document.

:func:`problems` walks every operation and every schema of one document and returns a sentence
per convention broken (an empty list: the document keeps them all).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

LOWER_SNAKE = re.compile(r"^-?[a-z0-9]+(_[a-z0-9]+)*$")
"""Lower snake case; a sort key may lead with ``-`` (descending), as in ``?sort=-joined_on``."""
WRITE_METHODS = {"post", "put", "patch", "delete"}
METHODS = ("get", "put", "post", "delete", "patch", "options", "head")
PUBLIC_PATHS = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/static/{asset}"}
"""Answered without a credential (probes, documents): no 401/403 to document."""


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        _, _, section, name = node["$ref"].split("/", 3)
        node = doc.get("components", {}).get(section, {}).get(name, {})
    return node


def _ref_name(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        return str(node["$ref"].rsplit("/", 1)[-1])
    return None


def _walk(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object under ``node`` with a readable location."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for name, sub in value.items():
                    yield from _walk(sub, f"{where}.{name}")
            elif isinstance(value, dict | list):
                yield from _walk(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, where)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in (doc.get("paths") or {}).items():
        for method in METHODS:
            if isinstance(item.get(method), dict):
                yield path, method, item[method]


EXTERNAL_PREFIXES = ("cordis_",)
"""Identifiers another system gives (CORDIS's project and organisation numbers): not our ids, kept as
that system writes them."""


NOT_OUR_IDS = {
    "DeliveryPublic.message_id": "a mail's Message-ID header (RFC 5322, <…@domain>), as the mail carried it",
}
"""Properties named like ids that name something of another standard, not a row of ours (with why)."""


def _is_id(name: str) -> bool:
    return (name == "id" or name.endswith("_id")) and not name.startswith(EXTERNAL_PREFIXES)


def _id_problem(doc: dict[str, Any], where: str, node: Any) -> str | None:
    """A sentence when an id given as text is not documented as a dashed UUID (integer ids, such as a
    log's positions, are numbers and not concerned)."""
    node = _resolve(doc, node)
    variants = [_resolve(doc, v) for v in node.get("anyOf", [node])]
    texts = [v for v in variants if v.get("type") == "string"]
    if texts and not all(v.get("format") == "uuid" for v in texts):
        return f"{where}: an id without format uuid"
    return None


def id_problems(doc: dict[str, Any]) -> list[str]:
    """Ids in one form (docs/api-conventions.md, "Ids"): every ``id``/``*_id`` property of every schema
    and every ``*_id`` path parameter that is text is ``format: uuid``."""
    found: list[str] = []
    for path, method, op in _operations(doc):
        for param in (_resolve(doc, p) for p in op.get("parameters", [])):
            if param.get("in") == "path" and _is_id(param.get("name", "")):
                problem = _id_problem(doc, f"{method.upper()} {path}: path {param['name']}", param.get("schema", {}))
                if problem:
                    found.append(problem)
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        for prop, node in (schema.get("properties") or {}).items():
            if _is_id(prop) and f"{name}.{prop}" not in NOT_OUR_IDS:
                problem = _id_problem(doc, f"{name}.{prop}", node)
                if problem:
                    found.append(problem)
    return found


def problems(doc: dict[str, Any], *, authenticated: bool = True) -> list[str]:
    """Every convention ``doc`` breaks, one sentence each."""
    found: list[str] = []
    schemas = doc.get("components", {}).get("schemas", {})
    if any(name.endswith("HTTPValidationError") for name in schemas):
        found.append("FastAPI's own 422 shape (HTTPValidationError) is in the document")
    for path, method, op in _operations(doc):
        label = f"{method.upper()} {path}"
        responses = op.get("responses", {})
        params = [_resolve(doc, p) for p in op.get("parameters", [])]
        needed = {"400", "404"}
        if authenticated and path not in PUBLIC_PATHS:
            needed |= {"401", "403"}
        if params or "requestBody" in op:
            needed.add("422")
        if method in WRITE_METHODS:
            needed |= {"409", "422"}
        for code in sorted(needed - set(responses)):
            found.append(f"{label}: no {code} response documented")
        for code, response in responses.items():
            if not code.startswith(("4", "5")) or (path == "/readyz" and code == "503"):
                continue
            content = _resolve(doc, response).get("content", {}).get("application/json", {})
            name = _ref_name(content.get("schema"))
            if name is None or not name.endswith("ErrorBody"):
                found.append(f"{label}: response {code} is not the shared error shape (ErrorBody)")
        for param in params:
            schema = _resolve(doc, param.get("schema", {}))
            paging = param.get("in") == "query" and param.get("name") in ("limit", "offset")
            if paging and ("maximum" not in schema or "minimum" not in schema):
                found.append(f"{label}: query {param['name']} has no minimum and maximum")
    for name, schema in schemas.items():
        for where, node in _walk(schema, name):
            for value in node.get("enum", []) or []:
                if isinstance(value, str) and not LOWER_SNAKE.match(value):
                    found.append(f"{where}: enum value {value!r} is not lower snake case")
        for prop, node in (schema.get("properties") or {}).items():
            node = _resolve(doc, node)
            variants = [_resolve(doc, v) for v in node.get("anyOf", [node])]
            if prop.endswith("_at") and not any(v.get("format") == "date-time" for v in variants):
                found.append(f"{name}.{prop}: a timestamp without format date-time")
    return found


def _shadows(earlier: str, later: str) -> bool:
    """Whether every URL of ``later`` also matches ``earlier``, a parameter of ``earlier`` standing
    where ``later`` has a literal segment (``later`` is the more literal path)."""
    first, second = earlier.strip("/").split("/"), later.strip("/").split("/")
    if len(first) != len(second):
        return False
    pairs = list(zip(first, second, strict=True))
    covers = all(a.startswith("{") or a == b for a, b in pairs)
    return covers and any(a.startswith("{") and not b.startswith("{") for a, b in pairs)


def shadowed_paths(doc: dict[str, Any]) -> list[str]:
    """Literal paths a parameterised path listed before them takes the same method of (the framework
    routes by order: `GET /things/export` after `GET /things/{id}` would read a thing called
    "export"). The document lists the paths in the order of the routes."""
    paths: dict[str, Any] = doc.get("paths") or {}
    order = list(paths)
    methods = {"get", "put", "post", "patch", "delete"}
    found = []
    for i, earlier in enumerate(order):
        for later in order[i + 1 :]:
            if _shadows(earlier, later):
                both = sorted(set(paths[earlier]) & set(paths[later]) & methods)
                found += [f"{m.upper()} {later}: routed to {earlier}, included before it" for m in both]
    return found
