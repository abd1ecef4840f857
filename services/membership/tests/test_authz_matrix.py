"""Every route of the register × every role × own/other organisation (docs/service-guide.md, "Authorisation")."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from distretto_dev.authz_matrix import (
    MEMBERS,
    OWN,
    PUBLIC,
    SIGNED_IN,
    STAFF,
    Case,
    assert_covered,
    check,
    ok,
    principals,
)
from distretto_dev.testing import identity_headers, service_client
from membership.app import create_app
from membership.config import Settings

_n = itertools.count()


def _org(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "company", "sectors": ["biotech"], "city": "Siena", "province": "SI", **fields}


async def _seed(client: httpx.AsyncClient, tag: str) -> dict[str, Any]:
    """An active member organisation with private records carrying ``tag``'s markers."""
    org = await ok(await client.post("/organisations", json=_org(f"Organisation {tag}")), 201)
    oid = org["id"]
    await ok(await client.post(f"/organisations/{oid}/approve", json={}))
    turnover = {"A": 111222333, "B": 444555666}[tag]
    figures = {"staff": 30, "rd_staff": 5, "turnover_eur": turnover, "lab_m2": 10, "patents": 1}
    await ok(await client.put(f"/organisations/{oid}/figures/2025", json=figures))
    await ok(await client.post(f"/organisations/{oid}/suspend", json={"reason": f"reason-secret-{tag}"}))
    await ok(await client.post(f"/organisations/{oid}/reinstate", json={}))
    await ok(await client.post(f"/organisations/{oid}/renewals", json={"amount_eur": 1234.5}), 201)
    contact = await ok(
        await client.post(
            f"/organisations/{oid}/contacts",
            json={"first_name": "Anna", "last_name": f"Secret{tag}", "email": f"anna.secret-{tag.lower()}@org.example"},
        ),
        201,
    )
    return {"id": oid, "contact_id": contact["id"]}


async def test_every_route_every_role_own_and_other_organisation(settings: Settings) -> None:
    app = create_app(settings)
    assert_covered(app, CASES)
    async with service_client(app) as client:
        a, b = await _seed(client, "A"), await _seed(client, "B")
        applicant = await ok(await client.post("/organisations", json=_org("Applicant Secret-C")), 201)

        async def fresh_contact() -> dict[str, Any]:
            body = {"first_name": "Erase", "last_name": "Me", "email": f"erase-{next(_n)}@org.example"}
            contact = await ok(await client.post(f"/organisations/{a['id']}/contacts", json=body), 201)
            return {"contact_id": contact["id"]}

        for case in CASES:
            if case.path == "/contacts/{contact_id}/erase":
                case.fresh = fresh_contact
        await check(
            client,
            "membership",
            CASES,
            {"organisation_id": a["id"], "contact_id": a["contact_id"], "year": 2025},
            {
                "A": ["anna.secret-a@", "SecretA", "111222333", "reason-secret-A"],
                "B": ["anna.secret-b@", "SecretB", "444555666", "reason-secret-B"],
                "C": ["Applicant Secret-C"],  # an application: its own and staff's only
            },
            org_a=a["id"],
            org_b=b["id"],
        )

        # Lists filter: the walker proved B's records never reach A; here A's own do.
        me = principals(a["id"], b["id"])["member_a"]
        contacts = await ok(await client.get("/contacts", headers=identity_headers(me, "membership")))
        assert contacts["items"] and {c["organisation_id"] for c in contacts["items"]} == {a["id"]}
        register = await ok(await client.get("/organisations", headers=identity_headers(me, "membership")))
        seen = {o["id"]: o for o in register["items"]}
        assert applicant["id"] not in seen  # someone else's application is not public
        assert seen[b["id"]]["latest_figures"] is None and seen[b["id"]]["renewal_due"] is None
        assert seen[a["id"]]["latest_figures"] is not None  # its own, in full


def _contact_body(_: Any) -> dict[str, Any]:
    return {"first_name": "Nuovo", "last_name": "Contatto", "email": f"new-{next(_n)}@org.example"}


def _plan_body(_: Any) -> dict[str, Any]:
    return {"name": f"Plan {next(_n)}", "amount_eur": 100}


FIGURES = {"staff": 31, "rd_staff": 5, "turnover_eur": 111222333, "lab_m2": 10, "patents": 1}

# Lifecycle changes of A come last (suspend, reinstate, then leave: A ends as "left").
CASES: list[Case] = [
    Case("GET", "/figures", PUBLIC),
    Case("GET", "/organisations", SIGNED_IN),
    Case("GET", "/organisations/{organisation_id}", SIGNED_IN),
    Case("GET", "/organisations/export", STAFF),
    Case("GET", "/organisations/{organisation_id}/figures", OWN),
    Case("GET", "/organisations/{organisation_id}/renewals", OWN),
    Case("GET", "/organisations/{organisation_id}/history", OWN),
    Case("GET", "/organisations/{organisation_id}/contacts", OWN),
    Case("GET", "/contacts", MEMBERS),
    Case("GET", "/contacts/{contact_id}", OWN),
    Case("GET", "/contacts/{contact_id}/personal-data", STAFF),
    Case("GET", "/contacts/{contact_id}/export", OWN),
    Case("GET", "/fee-plans", MEMBERS),
    Case("POST", "/fee-plans", STAFF, body=_plan_body),
    Case("POST", "/organisations", STAFF, body=lambda _: _org(f"New {next(_n)}")),
    Case(
        "POST",
        "/organisations/import",
        STAFF,
        content=b"name,kind\nImported Srl,company\n",
        headers={"content-type": "text/csv"},
    ),
    Case("PATCH", "/organisations/{organisation_id}", OWN, body={"description": "updated by the matrix"}),
    Case("PUT", "/organisations/{organisation_id}/figures/{year}", OWN, body=FIGURES),
    Case("POST", "/organisations/{organisation_id}/contacts", OWN, body=_contact_body),
    Case("PATCH", "/contacts/{contact_id}", OWN, body={"role": "CEO"}),
    Case("POST", "/contacts/{contact_id}/erase", OWN),
    Case("POST", "/organisations/{organisation_id}/approve", STAFF, body={}),
    Case("POST", "/organisations/{organisation_id}/reject", STAFF, body={}),
    Case("POST", "/organisations/{organisation_id}/lapse", STAFF, body={"reason": "matrix"}),
    Case("POST", "/organisations/{organisation_id}/renewals", STAFF, body={}),
    Case("POST", "/organisations/{organisation_id}/suspend", STAFF, body={"reason": "matrix"}),
    Case("POST", "/organisations/{organisation_id}/reinstate", STAFF, body={}),
    Case("POST", "/organisations/{organisation_id}/leave", OWN, body={}),
]
