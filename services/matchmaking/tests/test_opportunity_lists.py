"""The opportunity lists (owner/staff view and anonymised public view): paged by the backbone's
``paginate()`` in the database, with bounded ``limit``/``offset`` (docs/api-conventions.md, "Paging")."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from distretto_dev.testing import identity_headers, service_client
from distretto_shared.identity import Principal, Role
from matchmaking.app import create_app
from matchmaking.config import Settings

OWNER, OTHER = str(uuid.uuid4()), str(uuid.uuid4())
MEMBER = Principal(id="user:lists-member", role=Role.MEMBER, organisation_id=OTHER)
ANONYMOUS = Principal(id="anonymous", role=Role.ANONYMOUS)


async def _page(client: httpx.AsyncClient, url: str, **params: Any) -> dict[str, Any]:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _publish_seven(client: httpx.AsyncClient, publish: Any) -> list[dict[str, Any]]:
    """Seven opportunities: five of OWNER (one withdrawn, one in sector ``bio_tech``), two of OTHER."""
    made = []
    for i in range(7):
        owner = OTHER if i in (2, 5) else OWNER
        sectors = ["bio_tech"] if i == 4 else ["bioxtech"] if i == 6 else ["biotech"]
        made.append(
            await publish(
                client,
                title=f"Closed-system CAR-T manufacturing process no. {i}",
                owner_organisation_id=owner,
                reference=f"LIST-{i}",
                sectors=sectors,
            )
        )
    withdrawn = await client.post(f"/opportunities/{made[3]['id']}/withdraw")
    assert withdrawn.status_code == 200, withdrawn.text
    return made


async def test_the_owner_view_pages_newest_first_with_totals(settings: Settings, publish: Any) -> None:
    async with service_client(create_app(settings)) as client:
        made = await _publish_seven(client, publish)
        everything = await _page(client, "/opportunities")
        assert everything["total"] == 7 and everything["limit"] == 50 and everything["offset"] == 0
        newest_first = [o["id"] for o in everything["items"]]
        assert sorted(newest_first) == sorted(o["id"] for o in made)

        pages = [await _page(client, "/opportunities", limit=3, offset=offset) for offset in (0, 3, 6)]
        second = pages[1]
        assert (second["total"], second["limit"], second["offset"]) == (7, 3, 3)
        assert [o["id"] for o in second["items"]] == newest_first[3:6]
        assert [len(p["items"]) for p in pages] == [3, 3, 1]
        assert [o["id"] for p in pages for o in p["items"]] == newest_first, "pages neither overlap nor skip"
        assert (await _page(client, "/opportunities", offset=7)) == {"items": [], "total": 7, "limit": 50, "offset": 7}

        # The filters narrow the total too, not only the page.
        mine = await _page(client, "/opportunities", owner_organisation_id=uuid.UUID(OWNER).hex, limit=2, offset=2)
        assert mine["total"] == 5 and len(mine["items"]) == 2
        assert {o["owner_organisation_id"] for o in mine["items"]} == {OWNER}
        active = await _page(client, "/opportunities", status="active")
        assert active["total"] == 6 and made[3]["id"] not in {o["id"] for o in active["items"]}
        # A sector is matched whole, its "_" not a wildcard (bioxtech is another sector).
        sector = await _page(client, "/opportunities", sector="bio_tech")
        assert (sector["total"], [o["id"] for o in sector["items"]]) == (1, [made[4]["id"]])
        assert (await _page(client, "/opportunities", sector="biotech"))["total"] == 5
        assert (await _page(client, "/opportunities", sector="bio"))["total"] == 0

        # A member sees its own organisation's only, counted and paged the same way.
        as_member = await client.get("/opportunities", params={"limit": 1, "offset": 1}, headers=_as(MEMBER))
        assert as_member.status_code == 200, as_member.text
        member_page = as_member.json()
        others = [i for i in newest_first if i in (made[2]["id"], made[5]["id"])]
        assert member_page["total"] == 2 and [o["id"] for o in member_page["items"]] == others[1:]


async def test_the_public_view_pages_published_opportunities_only(settings: Settings, publish: Any) -> None:
    async with service_client(create_app(settings)) as client:
        made = await _publish_seven(client, publish)
        published = [o["id"] for o in reversed(made) if o["id"] != made[3]["id"]]  # newest first, not withdrawn
        anonymous = await client.get("/public/opportunities", headers=_as(ANONYMOUS))
        assert anonymous.status_code == 200, anonymous.text
        everything = anonymous.json()
        assert everything["total"] == 6
        assert sorted(o["id"] for o in everything["items"]) == sorted(published)
        assert all("owner_organisation_id" not in o and "reference" not in o for o in everything["items"])
        order = [o["id"] for o in everything["items"]]

        pages = [await _page(client, "/public/opportunities", limit=2, offset=offset) for offset in (0, 2, 4)]
        assert (pages[1]["total"], pages[1]["limit"], pages[1]["offset"]) == (6, 2, 2)
        assert [o["id"] for o in pages[1]["items"]] == order[2:4]
        assert [o["id"] for p in pages for o in p["items"]] == order
        sector = await _page(client, "/public/opportunities", sector="biotech", limit=2, offset=2)
        assert sector["total"] == 4 and len(sector["items"]) == 2
        assert all(o["sectors"] == ["biotech"] for o in sector["items"])
        assert (await _page(client, "/public/opportunities", sector="bio_tech"))["total"] == 1


async def test_paging_out_of_bounds_is_a_validation_error(settings: Settings, publish: Any) -> None:
    """Before, an offset beyond what the database takes answered a plain-text 500."""
    async with service_client(create_app(settings)) as client:
        await publish(client)
        for url in ("/opportunities", "/public/opportunities"):
            for params in (
                {"offset": "9223372036854775808"},
                {"offset": "1000001"},
                {"offset": "-1"},
                {"limit": "0"},
                {"limit": "501"},
                {"limit": "ten"},
            ):
                r = await client.get(url, params=params)
                assert r.status_code == 422, (url, params, r.status_code, r.text)
                body = r.json()
                assert body["error"] == "validation_error" and body["message"], body
                assert body["details"] and body["details"][0]["loc"][:2] == ["query", next(iter(params))], body
            widest = await _page(client, url, limit=500, offset=1_000_000)
            assert widest == {"items": [], "total": 1, "limit": 500, "offset": 1_000_000}


def _as(principal: Principal) -> dict[str, str]:
    return identity_headers(principal, "matchmaking")
