"""Every route of matchmaking × every role × own/other organisation (docs/service-guide.md, "Authorisation")."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from distretto_dev.authz_matrix import MEMBERS, OWN, PUBLIC, STAFF, Case, assert_covered, check, ok, principals
from distretto_dev.testing import identity_headers, service_client, wait_for
from distretto_shared.contracts.membership import OrganisationProfile
from matchmaking.app import create_app
from matchmaking.config import Settings
from matchmaking.profiles import service

# membership's ids of organisations A, B and C
ORG_A, ORG_B, ORG_C = (
    "0a0a0a0a-0000-4000-8000-00000000000a",
    "0b0b0b0b-0000-4000-8000-00000000000b",
    "0c0c0c0c-0000-4000-8000-00000000000c",
)
OFFER = {
    "opportunity_type": "technology_offer",
    "title": "Automated closed-system manufacturing of CAR-T cells",
    "summary": "A closed, automated bioreactor process that cuts the cost of CAR-T cell therapy manufacturing.",
    "keywords": ["CAR-T", "cell therapy", "GMP manufacturing"],
    "sectors": ["biotech"],
    "country": "IT",
}
REQUEST = {
    "opportunity_type": "technology_request",
    "title": "Wanted: automated GMP process for CAR-T cell manufacturing",
    "summary": "A hospital cell factory looks for a closed bioreactor process to manufacture CAR-T cells.",
    "keywords": ["CAR-T", "GMP manufacturing"],
    "sectors": ["biotech"],
    "country": "IT",
}
_n = itertools.count()
_admin_client: list[httpx.AsyncClient] = []


async def _fresh_offer() -> dict[str, str]:
    """A new opportunity of A for each call that withdraws one."""
    created = await ok(await _admin_client[0].post("/opportunities", json=_new_offer(None)), 201)
    return {"opportunity_id": str(created["id"])}


async def _match(client: httpx.AsyncClient, offer: str, request: str, tag: str) -> str:
    body = {"opportunity_id": offer, "counterpart_type": "opportunity", "counterpart_id": request}

    async def proposed() -> httpx.Response | None:  # the index takes the new documents after their commit
        response = await client.post("/matches", json=body)
        return None if response.status_code == 409 else response

    mid = str((await ok(await wait_for(proposed, what="the match proposed"), 201))["id"])
    for side in ("opportunity", "counterpart"):
        await ok(await client.post(f"/matches/{mid}/accept", json={"side": side}))
    meeting = {"scheduled_at": "2030-05-01T10:00:00Z", "place": f"place-secret-{tag}"}
    await ok(await client.post(f"/matches/{mid}/meeting", json=meeting))
    return mid


async def test_every_route_every_role_own_and_other_organisation(settings: Settings) -> None:
    app = create_app(settings)
    assert_covered(app, CASES)
    async with service_client(app) as client:
        _admin_client[:] = [client]
        ctx = app.state.ctx.context()
        for oid in (ORG_A, ORG_B, ORG_C):
            profile = OrganisationProfile(
                organisation_id=oid,
                name=f"Matrix {oid[-1].upper()}",
                kind="company",
                sectors=["biotech"],
                description="Cell therapy manufacturing",
                competences=["CAR-T"],
                status="active",
            )
            async with ctx.db.transaction() as session:
                await service.apply_organisation(ctx, session, profile)
        offer_a = await ok(
            await client.post(
                "/opportunities", json={**OFFER, "owner_organisation_id": ORG_A, "reference": "ref-secret-A"}
            ),
            201,
        )
        offer_b = await ok(
            await client.post(
                "/opportunities", json={**OFFER, "owner_organisation_id": ORG_B, "reference": "ref-secret-B"}
            ),
            201,
        )
        request_c = await ok(await client.post("/opportunities", json={**REQUEST, "owner_organisation_id": ORG_C}), 201)
        match_a = await _match(client, offer_a["id"], request_c["id"], "A")
        match_b = await _match(client, offer_b["id"], request_c["id"], "B")

        await check(
            client,
            "matchmaking",
            CASES,
            {
                "organisation_id": ORG_A,
                "opportunity_id": offer_a["id"],
                "match_id": match_a,
                "counterpart_id": request_c["id"],
            },
            {"A": ["ref-secret-A", "place-secret-A"], "B": ["ref-secret-B", "place-secret-B"]},
            org_a=ORG_A,
            org_b=ORG_B,
        )

        # The probe: a member of A asks for the B↔C match and its meeting place.
        me = principals(ORG_A, ORG_B)["member_a"]
        assert (await client.get(f"/matches/{match_b}", headers=identity_headers(me, "matchmaking"))).status_code == 404
        mine = await ok(await client.get("/matches", headers=identity_headers(me, "matchmaking")))
        ids = {m["id"] for m in mine["items"]}
        assert match_a in ids and match_b not in ids
        # … and its side of its own match, but not the other side.
        other_side = await client.post(
            f"/matches/{match_a}/feedback",
            json={"side": "counterpart", "useful": True},
            headers=identity_headers(me, "matchmaking"),
        )
        assert other_side.status_code == 403, other_side.text


def _new_offer(_: Any) -> dict[str, Any]:
    return {**OFFER, "title": f"Matrix offer {next(_n)} for CAR-T manufacturing", "owner_organisation_id": ORG_A}


MEETING = {"scheduled_at": "2030-06-01T10:00:00Z", "place": "place-secret-A"}

CASES: list[Case] = [
    Case("GET", "/public/opportunities", PUBLIC),
    Case("GET", "/public/opportunities/{opportunity_id}", PUBLIC),
    Case("GET", "/opportunities", MEMBERS),
    Case("GET", "/opportunities/{opportunity_id}", OWN),
    Case("GET", "/opportunities/{opportunity_id}/counterparts", OWN),
    Case("GET", "/organisations", MEMBERS),
    Case("GET", "/organisations/{organisation_id}", MEMBERS),
    Case("GET", "/organisations/{organisation_id}/opportunities", OWN),
    Case("GET", "/matches", MEMBERS),
    Case("GET", "/matches/{match_id}", OWN),
    Case("GET", "/index", STAFF),
    Case("POST", "/opportunities", OWN, body=_new_offer),
    Case("PATCH", "/opportunities/{opportunity_id}", OWN, body={"summary": "Changed by the matrix: CAR-T bioreactor."}),
    Case("POST", "/opportunities/{opportunity_id}/renew", OWN, body={"months": 12}),
    Case("POST", "/opportunities/{opportunity_id}/withdraw", OWN, fresh=lambda: _fresh_offer()),
    Case("POST", "/opportunities/{opportunity_id}/matches", OWN, body={"limit": 1}),
    Case(
        "POST",
        "/matches",
        OWN,
        body=lambda v: {
            "opportunity_id": v["opportunity_id"],
            "counterpart_type": "opportunity",
            "counterpart_id": v["counterpart_id"],
        },
    ),
    Case("POST", "/matches/{match_id}/feedback", OWN, body={"side": "opportunity", "useful": True}),
    Case("POST", "/matches/{match_id}/meeting", OWN, body=MEETING),
    Case("POST", "/matches/{match_id}/meeting/held", OWN, body={}),
    Case("POST", "/matches/{match_id}/accept", OWN, body={"side": "opportunity"}),
    Case("POST", "/matches/{match_id}/decline", OWN, body={"side": "opportunity"}),
]
