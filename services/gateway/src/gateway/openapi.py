"""One OpenAPI document for the whole platform, built from each service's own.

Paths are re-prefixed with ``/api/<service>``, component names with
``<service>_`` (every ``$ref`` rewritten), operation ids with ``<service>_``,
tags with ``<service>: ``. Each operation says which roles the policy table
lets in (``x-distretto-roles``) and which security schemes apply. A service
that is down is left out and named in ``x-distretto-upstreams`` and in the
description.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable
from typing import Any

import httpx

from gateway.domain import Policy

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A token from POST /auth/token",
    },
    "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "A partner system's API key"},
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_TEMPLATE_PARAM = re.compile(r"\{[^}/]+\}")


def _rewrite_refs(node: Any, section_renames: dict[str, dict[str, str]]) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/"):
                _, _, section, name = value.split("/", 3)
                new = section_renames.get(section, {}).get(name, name)
                out[key] = f"#/components/{section}/{new}"
            else:
                out[key] = _rewrite_refs(value, section_renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, section_renames) for v in node]
    return node


def annotate(operation: dict[str, Any], policy: Policy, method: str, path: str) -> None:
    """Mark an operation with the roles the policy table lets in, and its security schemes."""
    sample = _TEMPLATE_PARAM.sub("sample", path)
    rule = policy.match(method.upper(), sample)
    if rule is None:
        operation["x-distretto-roles"] = []
        operation["description"] = (operation.get("description", "") + "\n\nNot open through the gateway.").strip()
        return
    if rule.public:
        operation["x-distretto-roles"] = ["public"]
        operation["security"] = []
    else:
        operation["x-distretto-roles"] = sorted(r.value for r in rule.roles or ())
        operation["security"] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
    # what the gateway itself may answer, in the one error shape
    responses = operation.setdefault("responses", {})
    for code in (401, 403, 429) if not rule.public else (429,):
        responses.setdefault(str(code), _gateway_error(GATEWAY_ERRORS[code]))
    if rule.upstream != "gateway":
        for code in (502, 504):
            responses.setdefault(str(code), _gateway_error(GATEWAY_ERRORS[code]))


GATEWAY_ERRORS = {
    401: "No valid credential",
    403: "The caller's role or API key scopes do not allow this",
    429: "Too many requests (Retry-After says when to come back)",
    502: "The service is unavailable",
    504: "The service did not answer in time",
}


def _gateway_error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def merge(
    own: dict[str, Any],
    services: dict[str, dict[str, Any]],
    failures: dict[str, str],
    policy: Policy,
) -> dict[str, Any]:
    """The gateway's own document plus every service's, prefixed; ``failures`` names the missing ones."""
    doc = copy.deepcopy(own)
    doc["openapi"] = own.get("openapi", "3.1.0")
    paths: dict[str, Any] = doc.setdefault("paths", {})
    components: dict[str, Any] = doc.setdefault("components", {})
    tags: list[dict[str, Any]] = list(doc.get("tags", []))
    for path, item in paths.items():
        for method in METHODS:
            if method in item:
                annotate(item[method], policy, method, path)
    for name, service_doc in sorted(services.items()):
        renames: dict[str, dict[str, str]] = {
            section: {comp: f"{name}_{comp}" for comp in entries}
            for section, entries in (service_doc.get("components") or {}).items()
            if isinstance(entries, dict)
        }
        service_doc = _rewrite_refs(service_doc, renames)
        for section, entries in (service_doc.get("components") or {}).items():
            if isinstance(entries, dict):
                target = components.setdefault(section, {})
                for comp, value in entries.items():
                    target[renames[section][comp]] = value
        for path, item in (service_doc.get("paths") or {}).items():
            full = f"/api/{name}{path}"
            item = dict(item)
            for method in METHODS:
                op = item.get(method)
                if not isinstance(op, dict):
                    continue
                if "operationId" in op:
                    op["operationId"] = f"{name}_{op['operationId']}"
                op["tags"] = [f"{name}: {t}" for t in op.get("tags", [])] or [name]
                annotate(op, policy, method, full)
            paths[full] = item
        for tag in service_doc.get("tags", []) or []:
            if isinstance(tag, dict) and "name" in tag:
                tags.append({**tag, "name": f"{name}: {tag['name']}"})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    if tags:
        doc["tags"] = tags
    upstreams = {n: {"included": True} for n in services} | {
        n: {"included": False, "error": err} for n, err in failures.items()
    }
    doc["x-distretto-upstreams"] = dict(sorted(upstreams.items()))
    info = doc.setdefault("info", {})
    info["title"] = "Distretto API"
    description = info.get("description") or "The whole platform through its gateway."
    if failures:
        description += "\n\n**Missing (service unreachable when this document was built):** " + ", ".join(
            f"{n} ({err})" for n, err in sorted(failures.items())
        )
    info["description"] = description
    return doc


async def fetch_documents(
    client: httpx.AsyncClient,
    upstreams: dict[str, str],
    timeout: float,
    headers_for: Callable[[str], dict[str, str]] = lambda _name: {},
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each service's /openapi.json; the ones that failed with the reason."""

    async def one(name: str, base: str) -> tuple[str, dict[str, Any] | None, str]:
        try:
            response = await client.get(base + "/openapi.json", timeout=timeout, headers=headers_for(name))
            if response.status_code != 200:
                return name, None, f"HTTP {response.status_code}"
            body = response.json()
            if not isinstance(body, dict) or "paths" not in body:
                return name, None, "not an OpenAPI document"
            return name, body, ""
        except httpx.ConnectError:
            return name, None, "connection refused"
        except httpx.TimeoutException:
            return name, None, f"no answer within {timeout:g} s"
        except (httpx.HTTPError, ValueError) as exc:
            return name, None, type(exc).__name__

    results = await asyncio.gather(*(one(n, b) for n, b in upstreams.items()))
    docs = {n: d for n, d, _ in results if d is not None}
    failures = {n: e for n, d, e in results if d is None}
    return docs, failures
