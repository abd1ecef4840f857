"""Ids as docs/api-conventions.md says: answered dashed, taken in either form (dashed or 32-hex)."""

from __future__ import annotations

import re
import uuid
from typing import Any

DASHED = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def hex32(value: str) -> str:
    """The 32-hex form of a dashed id (what the other services stored before)."""
    return uuid.UUID(value).hex


async def test_every_id_is_answered_dashed_and_taken_in_either_form(membership: Any) -> None:
    plan = await membership.post(
        "/fee-plans", {"name": "Impresa", "amount_eur": 1200, "period_months": 12, "grace_days": 30}, expect=201
    )
    org = await membership.create()
    assert DASHED.fullmatch(org["id"]) and DASHED.fullmatch(plan["id"])

    # A path id and a body id in the 32-hex form name the same records; answers stay dashed.
    approved = await membership.post(f"/organisations/{hex32(org['id'])}/approve", {"fee_plan_id": hex32(plan["id"])})
    assert approved["id"] == org["id"]
    assert approved["status"] == "active"
    assert approved["fee_plan_id"] == plan["id"]
    assert (await membership.get(f"/organisations/{org['id'].upper()}"))["id"] == org["id"]

    contact = await membership.post(
        f"/organisations/{hex32(org['id'])}/contacts",
        {"first_name": "Anna", "last_name": "Rossi", "email": "anna.rossi@example.it"},
        expect=201,
    )
    assert DASHED.fullmatch(contact["id"])
    assert contact["organisation_id"] == org["id"]
    assert (await membership.get(f"/contacts/{hex32(contact['id'])}"))["id"] == contact["id"]
    personal = await membership.get(f"/contacts/{hex32(contact['id'])}/personal-data")
    assert (personal["contact_id"], personal["organisation_id"]) == (contact["id"], org["id"])

    renewal = await membership.post(f"/organisations/{hex32(org['id'])}/renewals", {}, expect=201)
    assert renewal["organisation_id"] == org["id"] and DASHED.fullmatch(renewal["id"])
    listed = await membership.get(f"/organisations/{hex32(org['id'])}/renewals")
    assert [r["id"] for r in listed["items"]] == [renewal["id"]]

    # Anything else is still an unknown id: 404 with the one error shape.
    response = await membership.http.get("/organisations/not-an-id")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_an_export_row_with_a_32_hex_id_updates_that_organisation(membership: Any) -> None:
    org = await membership.create(name="Alfa Pharma")
    body = f"id,name,kind\n{hex32(org['id'])},Alfa Pharma S.p.A.,company\n"
    response = await membership.http.post("/organisations/import", content=body, headers={"content-type": "text/csv"})
    assert response.status_code == 201, response.text
    assert response.json()["organisation_ids"] == [org["id"]]
    assert response.json()["updated"] == 1
    page = await membership.get("/organisations")
    assert [(o["id"], o["name"]) for o in page["items"]] == [(org["id"], "Alfa Pharma S.p.A.")]


async def test_the_openapi_document_says_ids_are_uuids(membership: Any) -> None:
    doc = await membership.get("/openapi.json")
    schemas = doc["components"]["schemas"]
    assert schemas["OrganisationPublic"]["properties"]["id"]["format"] == "uuid"
    assert schemas["ContactPublic"]["properties"]["organisation_id"]["format"] == "uuid"
    parameters = doc["paths"]["/organisations/{organisation_id}"]["get"]["parameters"]
    assert [p["schema"].get("format") for p in parameters if p["name"] == "organisation_id"] == ["uuid"]
    parameters = doc["paths"]["/contacts/{contact_id}"]["get"]["parameters"]
    assert [p["schema"].get("format") for p in parameters if p["name"] == "contact_id"] == ["uuid"]
