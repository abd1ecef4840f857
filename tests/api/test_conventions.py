"""Every service's and the gateway's OpenAPI document keeps the API conventions (docs/api-conventions.md)."""

from __future__ import annotations

import pytest

from .rules import id_problems, problems, shadowed_paths
from .targets import TARGETS, openapi_document

NOT_YET: dict[str, list[str]] = {}
"""Broken conventions still to fix, named one by one (docs/api-conventions.md, "Not yet"); empty since
the projects service's vocabularies (and newsletter's segment roles that repeat them) went lower snake
case. The test fails when a listed one is fixed (take it off the list) as when a new one appears."""


IDS_IN_ONE_FORM = (
    "membership",
    "gateway",
    "partners",
    "matchmaking",
    "projects",
    "newsletter",
)
"""The services whose ids are in one form (docs/api-conventions.md, "Ids"): every text id of their
documents is a dashed UUID. A service that moves joins with one line here."""


@pytest.mark.parametrize("name", IDS_IN_ONE_FORM)
def test_ids_are_documented_as_dashed_uuids(name: str) -> None:
    found = id_problems(openapi_document(name))
    assert not found, f"{len(found)} ids of {name} not in the one form:\n" + "\n".join(found)


@pytest.mark.parametrize("name", TARGETS)
def test_openapi_document_keeps_the_conventions(name: str) -> None:
    doc = openapi_document(name)
    assert len(doc["paths"]) >= 3, "the document lists the service's routes"
    found = problems(doc)
    known = NOT_YET.get(name, [])
    new = [p for p in found if p not in known]
    assert not new, f"{len(new)} conventions broken by {name}:\n" + "\n".join(new)
    fixed = [p for p in known if p not in found]
    assert not fixed, f"fixed in {name}, take them off NOT_YET:\n" + "\n".join(fixed)


def test_the_rules_see_each_convention_broken() -> None:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    default_422 = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}
    broken = {
        "paths": {
            "/things": {
                "get": {
                    "parameters": [{"in": "query", "name": "offset", "schema": {"type": "integer", "minimum": 0}}],
                    "responses": {
                        "200": {},
                        "400": error,
                        "401": error,
                        "403": error,
                        "404": error,
                        "422": default_422,
                    },
                },
                "post": {"requestBody": {}, "responses": {"201": {}}},
            }
        },
        "components": {
            "schemas": {
                "ErrorBody": {"type": "object"},
                "HTTPValidationError": {"type": "object"},
                "Thing": {
                    "properties": {
                        "status": {"type": "string", "enum": ["planned", "SIGNED"]},
                        "created_at": {"type": "string"},
                    }
                },
            }
        },
    }
    found = "\n".join(problems(broken))
    ids = id_problems(
        {
            "paths": {
                "/things/{thing_id}": {
                    "get": {"parameters": [{"in": "path", "name": "thing_id", "schema": {"type": "string"}}]}
                }
            },
            "components": {
                "schemas": {
                    "Thing": {
                        "properties": {
                            "id": {"type": "string", "format": "uuid"},
                            "owner_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                            "message_id": {"type": "integer"},
                            "cordis_organisation_id": {"type": "string"},
                            "cordis_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                            "partner_cordis_id": {"type": "string"},
                            "mail_id": {"type": "string"},
                        }
                    },
                    "DeliveryPublic": {"properties": {"message_id": {"type": "string"}}},
                }
            },
        }
    )
    assert ids == [
        "GET /things/{thing_id}: path thing_id: an id without format uuid",
        "Thing.owner_id: an id without format uuid",
        "Thing.partner_cordis_id: an id without format uuid",  # only a cordis_ prefix names CORDIS's own
        "Thing.mail_id: an id without format uuid",
    ]
    assert "HTTPValidationError" in found
    assert "GET /things: query offset has no minimum and maximum" in found
    assert "GET /things: response 422 is not the shared error shape" in found
    for code in ("400", "401", "403", "404", "409", "422"):
        assert f"POST /things: no {code} response documented" in found
    assert "Thing.status: enum value 'SIGNED' is not lower snake case" in found
    assert "'planned'" not in found
    assert "Thing.created_at: a timestamp without format date-time" in found


@pytest.mark.parametrize("name", TARGETS)
def test_no_literal_path_is_shadowed_by_one_included_before_it(name: str) -> None:
    found = shadowed_paths(openapi_document(name))
    assert not found, f"{name}: include these literal paths before the parameterised ones:\n" + "\n".join(found)


def test_the_shadow_rule_sees_a_literal_path_after_a_parameter() -> None:
    doc = {
        "paths": {
            "/things/{thing_id}": {"get": {}, "patch": {}},
            "/things/export": {"get": {}},
            "/things/{thing_id}/parts": {"get": {}},
            "/things/import": {"post": {}},
        }
    }
    assert shadowed_paths(doc) == ["GET /things/export: routed to /things/{thing_id}, included before it"]
    ordered = {"paths": {"/things/export": {"get": {}}, "/things/{thing_id}": {"get": {}}}}
    assert shadowed_paths(ordered) == []
