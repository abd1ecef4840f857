"""Members read only their own: the probes of "Members read other members", through the real gateway.

Before: a member of organisation A got 200 on B's figures (turnover), history ("suspend: unpaid
fee"), renewals, the opportunities ranked for B, and a B↔C match with its confidential meeting
place; and could change nothing of its own (the gateway refused members every write). Now the
services decide next to their queries: 403 for B's private records, 404 for the B↔C match, and
the member keeps its own organisation's figures and contacts.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from distretto_dev.testing import ServiceProcess, start_processes, stop_processes, wait_for

ADMIN = {"email": "admin@members.example", "password": "members-admin-password"}
PLACE = "Sala riservata, Via Banchi di Sopra 3, Siena"


@dataclass
class Platform:
    gateway: str
    a: str
    b: str
    match_b_c: str
    member_a: dict[str, str]
    partner: dict[str, str]


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


async def _login(gw: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    token = (await _ok(await gw.post("/auth/token", json={"email": email, "password": password})))["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    root: Path = tmp_path_factory.mktemp("members")
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_TOPIC_PREFIX": f"mb{uuid.uuid4().hex[:8]}.",
        "DISTRETTO_DATA_DIR": str(root / "data"),
    }
    membership = ServiceProcess("membership", env=common, log_path=root / "membership.log")
    matchmaking = ServiceProcess("matchmaking", env=common, log_path=root / "matchmaking.log")
    gateway = ServiceProcess(
        "gateway",
        env={
            **common,
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            "GATEWAY_MEMBERSHIP_URL": f"http://127.0.0.1:{membership.port}",
            "GATEWAY_MATCHMAKING_URL": f"http://127.0.0.1:{matchmaking.port}",
            "GATEWAY_RATE_LIMIT_PER_MINUTE": "6000",
            "GATEWAY_RATE_LIMIT_BURST": "500",
        },
        log_path=root / "gateway.log",
    )
    try:
        await start_processes([membership, matchmaking, gateway], timeout=120)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as gw:
            admin = await _login(gw, ADMIN["email"], ADMIN["password"])
            m, mm = "/api/membership", "/api/matchmaking"
            ids = []
            for name in ("Alfa Biotech", "Beta Farmaceutici", "Gamma Diagnostica"):
                body = {"name": name, "kind": "company", "sectors": ["biotech"], "city": "Siena",
                        "description": f"{name}: antibodies and diagnostics", "keywords": ["antibodies"],
                        "competences": ["antibody engineering"]}  # fmt: skip
                org = await _ok(await gw.post(f"{m}/organisations", json=body, headers=admin), 201)
                await _ok(await gw.post(f"{m}/organisations/{org['id']}/approve", json={}, headers=admin))
                ids.append(org["id"])
            a, b, c = ids
            figures = {"staff": 40, "rd_staff": 12, "turnover_eur": 8750000, "lab_m2": 300, "patents": 4}
            await _ok(await gw.put(f"{m}/organisations/{b}/figures/2025", json=figures, headers=admin))
            await _ok(await gw.post(f"{m}/organisations/{b}/suspend", json={"reason": "unpaid fee"}, headers=admin))
            await _ok(await gw.post(f"{m}/organisations/{b}/reinstate", json={}, headers=admin))
            await _ok(
                await gw.post(f"{m}/organisations/{b}/renewals", json={"amount_eur": 1777.77}, headers=admin), 201
            )
            contact = {"first_name": "Bruno", "last_name": "Beta", "email": "bruno.secret@beta.example"}
            await _ok(await gw.post(f"{m}/organisations/{b}/contacts", json=contact, headers=admin), 201)

            async def learned() -> bool:  # matchmaking learns the organisations from Kafka
                seen = await gw.get(f"{mm}/organisations", params={"status": "active"}, headers=admin)
                return seen.status_code == 200 and seen.json()["total"] >= 3

            await wait_for(learned, timeout=60, interval=0.25, what="matchmaking knows the three organisations")
            opportunity = {
                "opportunity_type": "technology_request",
                "title": "Wanted: antibody engineering partner",
                "summary": "Beta looks for antibody engineering and diagnostics know-how.",
                "keywords": ["antibodies", "antibody engineering"],
                "sectors": ["biotech"],
                "country": "IT",
                "owner_organisation_id": b,
            }
            opp = await _ok(await gw.post(f"{mm}/opportunities", json=opportunity, headers=admin), 201)
            pair = {"opportunity_id": opp["id"], "counterpart_type": "profile", "counterpart_id": c}

            async def propose() -> httpx.Response | None:  # the profile is indexed after its event's commit
                answer = await gw.post(f"{mm}/matches", json=pair, headers=admin)
                return answer if answer.status_code == 201 else None

            proposed = await wait_for(propose, timeout=30, interval=0.25, what="the match proposed")
            match = await _ok(proposed, 201)
            for side in ("opportunity", "counterpart"):
                await _ok(await gw.post(f"{mm}/matches/{match['id']}/accept", json={"side": side}, headers=admin))
            meeting = {"scheduled_at": "2030-05-01T10:00:00Z", "place": PLACE}
            await _ok(await gw.post(f"{mm}/matches/{match['id']}/meeting", json=meeting, headers=admin))

            users = {
                "member": {"email": "alice@alfa.example", "role": "member", "organisation_id": a},
                "partner": {"email": "pat@partner.example", "role": "partner"},
            }
            for user in users.values():
                await _ok(
                    await gw.post("/auth/users", json={**user, "password": "a-long-password-1"}, headers=admin), 201
                )
            member_a = await _login(gw, "alice@alfa.example", "a-long-password-1")
            partner = await _login(gw, "pat@partner.example", "a-long-password-1")
        yield Platform(gateway.url, a, b, match["id"], member_a, partner)
    finally:
        stop_processes([gateway, matchmaking, membership])


async def test_a_member_of_a_gets_nothing_private_of_b(platform: Platform) -> None:
    p = platform
    async with httpx.AsyncClient(base_url=p.gateway, timeout=30, headers=p.member_a) as gw:
        probes = {
            f"/api/membership/organisations/{p.b}/figures": 403,
            f"/api/membership/organisations/{p.b}/history": 403,
            f"/api/membership/organisations/{p.b}/renewals": 403,
            f"/api/membership/organisations/{p.b}/contacts": 403,
            f"/api/matchmaking/organisations/{p.b}/opportunities": 403,
            f"/api/matchmaking/matches/{p.match_b_c}": 404,
        }
        for path, status in probes.items():
            response = await gw.get(path)
            assert response.status_code == status, f"{path}: {response.status_code} {response.text}"
            for secret in ("8750000.0", "unpaid fee", "1777.77", PLACE, "bruno.secret"):
                assert secret not in response.text, path
        for path in ("/api/matchmaking/matches", "/api/membership/contacts", f"/api/membership/organisations/{p.b}"):
            response = await gw.get(path)
            assert response.status_code == 200, response.text
            for secret in ("8750000.0", PLACE, "bruno.secret", p.match_b_c):
                assert secret not in response.text, path
        # … and writes nothing of B's
        figures = {"staff": 1, "rd_staff": 0, "turnover_eur": 1, "lab_m2": 0, "patents": 0}
        assert (await gw.put(f"/api/membership/organisations/{p.b}/figures/2025", json=figures)).status_code == 403
        decline = await gw.post(f"/api/matchmaking/matches/{p.match_b_c}/decline", json={"side": "counterpart"})
        assert decline.status_code == 404


async def test_a_member_keeps_its_own_organisation(platform: Platform) -> None:
    p = platform
    async with httpx.AsyncClient(base_url=p.gateway, timeout=30, headers=p.member_a) as gw:
        figures = {"staff": 10, "rd_staff": 3, "turnover_eur": 1200000, "lab_m2": 50, "patents": 1}
        await _ok(await gw.put(f"/api/membership/organisations/{p.a}/figures/2025", json=figures))
        assert (await _ok(await gw.get(f"/api/membership/organisations/{p.a}/figures")))[0]["turnover_eur"] == 1200000
        contact = {"first_name": "Alice", "last_name": "Alfa", "email": "alice.contact@alfa.example"}
        added = await _ok(await gw.post(f"/api/membership/organisations/{p.a}/contacts", json=contact), 201)
        mine = await _ok(await gw.get("/api/membership/contacts"))
        assert [c["id"] for c in mine["items"]] == [added["id"]]
        await _ok(await gw.patch(f"/api/membership/organisations/{p.a}", json={"website": "https://alfa.example"}))


async def test_a_partner_sees_public_data_only(platform: Platform) -> None:
    p = platform
    async with httpx.AsyncClient(base_url=p.gateway, timeout=30, headers=p.partner) as gw:
        register = await _ok(await gw.get("/api/membership/organisations"))
        assert {p.a, p.b} <= {o["id"] for o in register["items"]}
        assert all(o["latest_figures"] is None for o in register["items"])
        for path in (
            f"/api/membership/organisations/{p.b}/figures",
            "/api/membership/contacts",
            "/api/matchmaking/matches",
        ):
            assert (await gw.get(path)).status_code == 403, path
