"""The console in front of a real gateway: login, session cookie, CSRF, 404/403/service-down pages, the feed."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import uvicorn

from console import service
from console.app import create_app
from console.config import Settings
from distretto_dev.testing import free_port, identity_headers, publish_events, service_client, wait_for
from distretto_shared.contracts import membership as ms
from distretto_shared.identity import ANONYMOUS
from distretto_shared.topics import ensure_topics

from .conftest import ADMIN

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _csrf(client: httpx.AsyncClient, path: str = "/login") -> str:
    page = await client.get(path)
    found = CSRF.search(page.text)
    assert found, page.text[:500]
    return found.group(1)


async def test_login_session_cookie_and_logout(settings: Settings) -> None:
    async with service_client(create_app(settings)) as client:
        client.headers["Accept-Language"] = "en-GB,en;q=0.9"
        # anonymous: the home page sends to the login page; a page of the register asks for login too
        assert (await client.get("/")).headers["location"] == "/login"
        assert (await client.get("/members?kind=company")).headers[
            "location"
        ] == "/login?next=/members%3Fkind%3Dcompany"
        token = await _csrf(client)
        wrong = await client.post("/login", data={**ADMIN, "password": "nope", "csrf_token": token})
        assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
        assert "console_session" not in client.cookies

        ok = await client.post("/login", data={**ADMIN, "csrf_token": token, "next": "//evil.example/x"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
        cookie = ok.headers["set-cookie"]
        assert "console_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Secure" not in cookie  # plain http here; over https (X-Forwarded-Proto) it is Secure
        page = await client.get("/admin")
        assert page.status_code == 200 and ADMIN["email"] in page.text

        # the services behind the gateway are down: the home page still answers, with panels saying so
        home = await client.get("/", headers={"Accept-Language": "en"})
        assert home.status_code == 200 and "The membership service is not answering" in home.text
        # a page that needs one service shows the service-down page
        down = await client.get("/members", headers={"Accept-Language": "en"})
        assert down.status_code == 503 and "membership" in down.text
        # unknown pages: the 404 page, in Italian when the browser asks for it
        missing = await client.get("/nowhere", headers={"Accept-Language": "it-IT,it;q=0.9"})
        assert missing.status_code == 404 and 'lang="it"' in missing.text and "Pagina non trovata" in missing.text

        out = await client.post("/logout", data={"csrf_token": await _csrf(client, "/admin")})
        assert out.status_code == 303
        assert (await client.get("/admin")).status_code == 303  # the session is gone


async def test_secure_cookie_over_https_and_csrf_refusals(settings: Settings) -> None:
    async with service_client(create_app(settings)) as client:
        client.headers["Accept-Language"] = "en-GB,en;q=0.9"
        token = await _csrf(client)
        https = await client.post("/login", data={**ADMIN, "csrf_token": token}, headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in https.headers["set-cookie"]
        # (a Secure cookie does not travel over this plain-http test client: log in again over http)
        assert (await client.post("/login", data={**ADMIN, "csrf_token": token})).status_code == 303
        # no token, a forged token, a token for another browser's cookie: refused, nothing done
        assert (await client.post("/logout")).status_code == 400
        assert (await client.post("/logout", data={"csrf_token": "forged"})).status_code == 400
        another_browser = identity_headers(ANONYMOUS, "console")
        async with httpx.AsyncClient(
            transport=client._transport, base_url="http://service", headers=another_browser
        ) as other:
            other_token = await _csrf(other)
        refused = await client.post("/logout", data={"csrf_token": other_token})
        assert refused.status_code == 400 and "expired" in refused.text.lower()
        # a segment form without its token: the "form expired" page, nothing sent to the newsletter
        unsigned = await client.post("/newsletter/segments", data={"name": "Biotech", "field": "sector", "values": "x"})
        assert unsigned.status_code == 400 and "expired" in unsigned.text.lower()
        assert (await client.get("/admin")).status_code == 200  # still logged in
        # htmx requests send the token in a header
        assert (
            await client.post("/logout", headers={"X-CSRF-Token": await _csrf(client, "/admin")})
        ).status_code == 303


async def test_member_cannot_open_the_staff_sections(settings: Settings) -> None:
    async with service_client(create_app(settings)) as client:
        client.headers["Accept-Language"] = "en-GB,en;q=0.9"
        token = await _csrf(client)
        await client.post("/login", data={**ADMIN, "csrf_token": token})
        page = await client.get("/admin")
        admin_token = CSRF.search(page.text)
        assert admin_token
        member_email = f"member-{uuid.uuid4().hex[:8]}@console.example"
        # the admin creates a member user through the console's administration page
        created = await client.post(
            "/admin/users",
            data={
                "email": member_email,
                "password": "member-password-1",
                "role": "member",
                "organisation_id": "org-a",
                "csrf_token": admin_token.group(1),
            },
        )
        assert created.status_code in (200, 303), created.text[:500]
        await client.post("/logout", data={"csrf_token": admin_token.group(1)})
        client.cookies.delete("console_session")
        token = await _csrf(client)
        login = await client.post(
            "/login", data={"email": member_email, "password": "member-password-1", "csrf_token": token}
        )
        assert login.status_code == 303
        for path in ("/admin", "/newsletter", "/newsletter/segments", "/newsletter/segments/new"):
            refused = await client.get(path, headers={"Accept-Language": "en"})
            assert refused.status_code == 403 and "Not yours to see" in refused.text, path
        # a segment posted by a member, with a valid form token: refused before any call to the newsletter
        member_token = CSRF.search((await client.get("/")).text)
        assert member_token
        rule = {"group": "all", "field": "sector", "operator": "any_of", "values": "biotech"}
        for path in ("/newsletter/segments", "/newsletter/segments/preview"):
            posted = await client.post(path, data={"name": "x", **rule, "csrf_token": member_token.group(1)})
            assert posted.status_code == 403 and "Not yours to see" in posted.text, path
        home = await client.get("/", headers={"Accept-Language": "en"})
        assert 'href="/newsletter"' not in home.text and 'href="/admin"' not in home.text
        assert 'href="/matchmaking"' in home.text


async def test_platform_events_become_the_feed_and_the_live_figures(settings: Settings, kafka_bootstrap: str) -> None:
    from distretto_shared.contracts import matchmaking as mm
    from distretto_shared.contracts import newsletter as nl
    from distretto_shared.contracts import projects as pj

    await ensure_topics(
        kafka_bootstrap,
        [
            *(ms.ORGANISATION_TOPIC, ms.CONTACT_TOPIC, ms.FIGURES_TOPIC, pj.PROJECT_TOPIC),
            *(nl.CAMPAIGN_TOPIC, nl.SUBSCRIBER_TOPIC, mm.OPPORTUNITY_TOPIC, mm.MATCH_TOPIC),
        ],
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        # what the gateway sends with every page request of a browser: an anonymous principal for the console
        via_gateway = identity_headers(ANONYMOUS, "console")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers={"Accept-Language": "en", **via_gateway}) as client:
            await wait_for(lambda: _up(client), timeout=60, what="the console answers")
            profile = ms.OrganisationProfile(
                organisation_id="o-1", name="CellForge S.r.l.", kind="company", status="active", sectors=["biotech"]
            )
            await publish_events(
                kafka_bootstrap,
                [
                    ms.OrganisationJoined(organisation_id="o-1", profile=profile, joined_on=date(2026, 12, 1)),
                    ms.DistrictFiguresChanged(computed_at=datetime.now(UTC), members_total=7, by_kind={"company": 7}),
                    ms.OrganisationRegistered(
                        organisation_id="o-2",
                        profile=ms.OrganisationProfile(organisation_id="o-2", name="Hidden Labs", kind="company"),
                    ),
                ],
            )
            ctx = app.state.ctx

            async def three() -> bool:
                return len(await service.activity_after(ctx.db, 0, staff=True)) >= 3

            await wait_for(three, timeout=60, what="the console's consumer recorded the three events")
            # an application is staff news; a member joining and the figures are public
            public = [r.kind for r in await service.activity_after(ctx.db, 0, staff=False)]
            assert sorted(public) == ["figures.changed", "organisation.joined"]
            token = await _csrf(client)
            await client.post("/login", data={**ADMIN, "csrf_token": token})
            home = await client.get("/")
            assert "CellForge S.r.l. joined" in home.text
            home_it = await client.get("/", headers={"Accept-Language": "it"})
            assert "CellForge S.r.l. è entrata nel distretto" in home_it.text

            # the live stream replays what came after a given id, the figures as their own event
            seen: list[str] = []
            async with client.stream("GET", "/live?after=0", timeout=30) as stream:
                async for line in stream.aiter_lines():
                    seen.append(line)
                    text = "\n".join(seen)
                    if "members_total" in text and "CellForge" in text:
                        break
            assert "event: activity" in text and "CellForge S.r.l. joined" in text
            assert "event: figures" in text and '"members_total":7' in text.replace(" ", "")
            # an anonymous reader (the public figures page) gets the figures too
            anonymous: list[str] = []
            async with (
                httpx.AsyncClient(base_url=base, headers=via_gateway) as other,
                other.stream("GET", "/live?after=0", timeout=30) as stream,
            ):
                async for line in stream.aiter_lines():
                    anonymous.append(line)
                    if line.startswith("data:") and "members_total" in line:
                        break
            assert "event: figures" in "\n".join(anonymous)
    finally:
        server.should_exit = True
        await serving


async def _up(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_an_active_session_outlives_the_gateway_token_and_ends_when_the_user_is_disabled(
    settings: Settings, gateway: str
) -> None:
    """The gateway's tokens last minutes; the console swaps them while the person works, and a user
    disabled at the gateway is logged out at the next swap."""
    from sqlalchemy import update
    from sqlmodel import col, select

    from console.models import BrowserSession

    async with httpx.AsyncClient(base_url=gateway) as gw:
        admin_token = (await gw.post("/auth/token", json=ADMIN)).json()["access_token"]
        email = f"staff-{uuid.uuid4().hex[:8]}@console.example"
        created = await gw.post(
            "/auth/users",
            json={"email": email, "password": "staff-password-12345", "role": "staff"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert created.status_code == 201, created.text
    app = create_app(settings)
    async with service_client(app) as client:
        client.headers["Accept-Language"] = "en"
        ok = await client.post(
            "/login", data={"email": email, "password": "staff-password-12345", "csrf_token": await _csrf(client)}
        )
        assert ok.status_code == 303
        db = app.state.ctx.db

        async def session_row() -> BrowserSession:
            async with db.read() as session:
                rows = (await session.execute(select(BrowserSession))).scalars().all()
            return next(r for r in rows if r.email == email)

        before = await session_row()
        # the token is about to run out: the next page swaps it for a fresh one and the person stays in
        async with db.transaction() as session:
            await session.execute(
                update(BrowserSession)
                .where(col(BrowserSession.id) == before.id)
                .values(expires_at=datetime.now(UTC) + timedelta(seconds=20))
            )
        assert (await client.get("/admin")).status_code in (200, 403)  # staff: the page or its 403, not login
        after = await session_row()
        assert after.gateway_token != before.gateway_token
        assert after.expires_at.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(minutes=5)

        # disabled at the gateway: the next swap is refused and the session ends
        async with httpx.AsyncClient(base_url=gateway) as gw:
            users = (
                await gw.get("/auth/users", params={"limit": 500}, headers={"Authorization": f"Bearer {admin_token}"})
            ).json()["items"]
            user_id = next(u["id"] for u in users if u["email"] == email)
            disabled = await gw.patch(
                f"/auth/users/{user_id}", json={"active": False}, headers={"Authorization": f"Bearer {admin_token}"}
            )
            assert disabled.status_code == 200, disabled.text
        async with db.transaction() as session:
            await session.execute(
                update(BrowserSession)
                .where(col(BrowserSession.id) == before.id)
                .values(expires_at=datetime.now(UTC) + timedelta(seconds=20))
            )
        # the gateway reads the account itself when asked for a fresh token: refused at once
        assert (await client.get("/admin")).status_code == 303
        assert (await client.get("/admin")).headers["location"].startswith("/login")
