"""The console's partner administration in Debian's Chromium (Playwright), with axe-core: an admin
creates a partner with its event types (its API key shown once), adds a webhook endpoint (its
signing secret shown once), sees a real delivery in the endpoint's log, replays, rotates the
secret, disables and enables the endpoint and deactivates the partner — in English and Italian.
The gateway, the partners service and the console are real processes on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, expect
from standardwebhooks.webhooks import Webhook

from distretto_dev.testing import ServiceProcess, free_port, publish_events, start_processes, stop_processes, wait_for
from distretto_shared.contracts import membership as ms

from .test_console import ADMIN, CHROMIUM, Platform, _ready, browser, check, login, new_page

__all__ = ["browser"]  # the module-scoped Chromium fixture of the console test

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
SERVICES = ("partners", "gateway", "console")


class Receiver:
    """A webhook receiver that verifies each delivery with the ``standardwebhooks`` library."""

    def __init__(self) -> None:
        self.port = free_port()
        self.secret = ""
        self.verified: list[str] = []

    async def __call__(self, scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()  # type: ignore[operator]
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = 401
        with contextlib.suppress(Exception):
            Webhook(self.secret).verify(body, headers)
            self.verified.append(headers["webhook-id"])
            status = 200
        await send({"type": "http.response.start", "status": status, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]


@pytest.fixture
async def platform(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> AsyncIterator[tuple[Platform, Receiver]]:
    ports = {name: free_port() for name in SERVICES}
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_TOPIC_PREFIX": topic_prefix,
        "DISTRETTO_DATA_DIR": str(tmp_path / "data"),
    }
    env = {
        "partners": {
            # the test's receiver is on loopback, over plain http: allowed here only
            "PARTNERS_WEBHOOK_REQUIRE_HTTPS": "false",
            "PARTNERS_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
        },
        "gateway": {
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            "GATEWAY_READYZ_REQUIRES_UPSTREAMS": "false",
            "GATEWAY_ANONYMOUS_RATE_LIMIT_PER_MINUTE": "100000",
            "GATEWAY_ANONYMOUS_RATE_LIMIT_BURST": "10000",
            "GATEWAY_PARTNERS_URL": f"http://127.0.0.1:{ports['partners']}",
            "GATEWAY_CONSOLE_URL": f"http://127.0.0.1:{ports['console']}",
        },
        "console": {"CONSOLE_GATEWAY_URL": gateway},
    }
    receiver = Receiver()
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=receiver.port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    procs: list[ServiceProcess] = []
    try:
        for name in SERVICES:
            proc = ServiceProcess(
                name, port=ports[name], env={**common, **env[name]}, log_path=tmp_path / f"{name}.log"
            )
            procs.append(proc)
        await start_processes(procs, timeout=120)
        async with httpx.AsyncClient() as client:
            for proc in procs:
                await wait_for(lambda p=proc: _ready(client, p.url), timeout=120, what=f"{proc.module} ready")
        yield Platform(gateway, ""), receiver
    finally:
        stop_processes(procs)
        server.should_exit = True
        await serving


async def test_an_admin_manages_a_partner_in_the_console(
    browser: Browser, platform: tuple[Platform, Receiver], kafka_bootstrap: str
) -> None:
    site, receiver = platform
    page = await new_page(browser, site)
    await login(page, ADMIN["email"], ADMIN["password"])
    await page.get_by_role("navigation").get_by_role("link", name="Partner systems").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Partner systems")
    await check(page, site, "partners (en)")

    # Nothing chosen: the fields say what is missing, nothing is created.
    await page.get_by_role("button", name="Create partner").click()
    await expect(page.get_by_text("Give the partner's name.")).to_be_visible()
    await expect(page.get_by_text("Choose at least one event type.")).to_be_visible()
    await check(page, site, "partners: refused form")

    await page.get_by_label("Name of the partner system").fill("Agenzia regionale per l'innovazione")
    await page.get_by_label("Contact address for notices").fill("integrazioni@agenzia.example")
    await page.get_by_label("distretto.public.organisation.joined.v1").check()
    await page.get_by_role("button", name="Create partner").click()
    await page.wait_for_load_state()
    if not await page.get_by_test_id("issued-key").count():  # say what the page said instead
        raise AssertionError("no key shown: " + (await page.locator("main").inner_text())[:2000])
    key = await page.get_by_test_id("issued-key").text_content()
    assert key and len(key) > 20
    await check(page, site, "partner: key shown once")
    # The key is shown on that one answer, never again.
    await page.get_by_role("link", name="Partner systems").first.click()
    await page.get_by_role("link", name="Agenzia regionale per l'innovazione").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Agenzia regionale per l'innovazione")
    partner_url = page.url
    await expect(page.get_by_test_id("issued-key")).to_have_count(0)
    assert key not in await page.content()

    # A webhook endpoint: its secret shown once; a real delivery appears in its log.
    await page.get_by_label("Receiver URL (https)").fill(f"http://127.0.0.1:{receiver.port}/distretto")
    await page.get_by_role("button", name="Add endpoint").click()
    secret = await page.get_by_test_id("webhook-secret").text_content()
    assert secret and secret.startswith("whsec_")
    receiver.secret = secret
    joined = ms.OrganisationJoined(
        organisation_id="org-console-partner",
        profile=ms.OrganisationProfile(
            organisation_id="org-console-partner", name="Console Bio S.r.l.", kind="company", status="active"
        ),
        joined_on="2026-12-04",  # type: ignore[arg-type]
    )
    await publish_events(kafka_bootstrap, [joined])
    await wait_for(lambda: _got(receiver), timeout=60, what="the delivery to the receiver")
    await page.goto(partner_url.split("?")[0])
    log = page.get_by_role("table", name="Delivery log (latest attempts)")
    await expect(log.get_by_role("cell", name="200", exact=True)).to_be_visible()
    await check(page, site, "partner: endpoint and delivery log", "partner")

    await page.get_by_label("…or everything since (UTC)").fill("2000-01-01T00:00")
    await page.get_by_role("button", name="Replay").click()
    await expect(page.get_by_text("1 events queued again.")).to_be_visible()
    await wait_for(lambda: _got(receiver, 2), timeout=60, what="the replayed delivery")

    await page.get_by_role("button", name="Rotate secret").click()
    rotated = await page.get_by_test_id("webhook-secret").text_content()
    assert rotated and rotated.startswith("whsec_") and rotated != secret

    await page.get_by_role("button", name="Disable").click()
    await expect(page.get_by_test_id("endpoint-state")).to_contain_text("disabled")
    await page.get_by_role("button", name="Enable").click()
    await expect(page.get_by_test_id("endpoint-state")).to_contain_text("enabled")

    # The same page in Italian, then the partner deactivated (its stream ends).
    await page.get_by_role("link", name="IT", exact=True).click()
    await expect(page.get_by_role("heading", name="Endpoint webhook", exact=True)).to_be_visible()
    await check(page, site, "partner (it)")
    await page.get_by_role("button", name="Disattiva", exact=True).first.click()
    await expect(page.get_by_test_id("partner-state")).to_have_text("disattivato")
    await page.get_by_role("navigation").get_by_role("link", name="Sistemi partner").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sistemi partner")
    await expect(page.get_by_role("cell", name="disattivato")).to_be_visible()
    await check(page, site, "partners (it)")


async def _got(receiver: Receiver, n: int = 1) -> bool:
    return len(receiver.verified) >= n
