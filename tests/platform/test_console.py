"""The console in Debian's Chromium (Playwright), every service a real process on the real broker.

Staff register a company with a contact, approve it and watch the home page's figures change
without reloading; import a CORDIS file and see the timeline; write a template, preview it and
send a campaign to the end; define a segment and send a campaign to exactly its members; a
member edits its own figures, is refused another member's page and accepts a match; the public
signs up and confirms from the caught mail; both languages
render. axe-core runs on every page and fails the test on a serious or critical violation.

``DISTRETTO_CONSOLE_SCREENSHOTS=docs/console`` also saves screenshots of the main pages.

One file (over 600 lines): every journey runs on one module-scoped stack of real processes and one
browser; split into files, each file would start its own stack (a minute or more each).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from babel.dates import format_date
from playwright.async_api import Browser, Page, async_playwright, expect

from distretto_dev.testing import ServiceProcess, free_port, start_processes, stop_processes, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DISTRETTO_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("DISTRETTO_CONSOLE_SCREENSHOTS")
ADMIN = {"email": "admin@console-e2e.example", "password": "console-e2e-admin"}
SERVICES = ("membership", "projects", "newsletter", "matchmaking", "gateway", "console")
BLOCKING = {"serious", "critical"}
LONG = 90_000  # ms: the longest a condition may take to become true under load (a bound, not a measure)

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
    # a hang guard, not a measure: the first test also waits for the six processes to start
    pytest.mark.timeout(900),
]


@dataclass
class Platform:
    url: str
    catcher: str
    api_token: str = ""
    token_at: float = field(default_factory=time.monotonic)
    axe: dict[str, dict[str, int]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    root = tmp_path_factory.mktemp("console")
    prefix = f"console{uuid.uuid4().hex[:8]}."
    smtp_port, catcher_port = free_port(), free_port()
    ports = {name: free_port() for name in SERVICES}
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_TOPIC_PREFIX": prefix,
        "DISTRETTO_DATA_DIR": str(root / "data"),
    }
    env: dict[str, dict[str, str]] = {
        "membership": {},
        "projects": {},
        "newsletter": {
            "NEWSLETTER_SMTP_SERVERS": f"127.0.0.1:{smtp_port}",
            "NEWSLETTER_MEMBERSHIP_URL": f"http://127.0.0.1:{ports['membership']}",
            "NEWSLETTER_LINK_BASE_URL": gateway + "/api/newsletter",
            # one mail a second: a campaign of a few dozen is still running when it is paused from the page
            "NEWSLETTER_SMTP_RATE_PER_SECOND": "1",
            "NEWSLETTER_SMTP_BURST": "1",
        },
        "matchmaking": {},
        "gateway": {
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            # the partners service is not started here: the gateway is ready with its own database
            "GATEWAY_READYZ_REQUIRES_UPSTREAMS": "false",
            "GATEWAY_RATE_LIMIT_PER_MINUTE": "100000",  # the tests set data up through the API
            "GATEWAY_RATE_LIMIT_BURST": "10000",
            "GATEWAY_ANONYMOUS_RATE_LIMIT_PER_MINUTE": "100000",
            "GATEWAY_ANONYMOUS_RATE_LIMIT_BURST": "10000",
            "GATEWAY_LOGIN_RATE_LIMIT_PER_MINUTE": "10000",
            "GATEWAY_LOGIN_RATE_LIMIT_BURST": "1000",
            **{f"GATEWAY_{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items() if n != "gateway"},
        },
        "console": {"CONSOLE_GATEWAY_URL": gateway},
    }
    catcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distretto_dev.catcher",
            "--smtp-port",
            str(smtp_port),
            "--http-port",
            str(catcher_port),
        ],
        env={**os.environ, **common},
        stdout=(root / "catcher.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs: list[ServiceProcess] = []
    try:
        for name in SERVICES:
            proc = ServiceProcess(name, port=ports[name], env={**common, **env[name]}, log_path=root / f"{name}.log")
            procs.append(proc)
        await start_processes(procs, timeout=120)
        # Logging in hashes a password: on a loaded machine that can take longer than httpx's 5 s.
        async with httpx.AsyncClient(timeout=60) as client:
            for proc in procs:
                await wait_for(lambda p=proc: _ready(client, p.url), timeout=120, what=f"{proc.module} ready")
            token = (await client.post(gateway + "/auth/token", json=ADMIN)).json()["access_token"]
        yield Platform(gateway, f"http://127.0.0.1:{catcher_port}", token)
    finally:
        stop_processes(procs)
        catcher.terminate()
        catcher.wait(10)


async def _ready(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url + "/readyz", timeout=3)).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def new_page(browser: Browser, platform: Platform, locale: str = "en-GB", phone: bool = False) -> Page:
    options: dict[str, Any] = {"base_url": platform.url, "locale": locale}
    if phone:
        options.update(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context = await browser.new_context(**options)
    page = await context.new_page()
    page.set_default_timeout(30_000)
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of consequential actions
    return page


AXE = Axe()
# what a page shows after a click may take more than Playwright's 5 s on a loaded machine (a bound, not a measure)
expect.set_options(timeout=30_000)


async def check(page: Page, platform: Platform, name: str, shot: str | None = None) -> None:
    """axe-core on the page as it is now: no serious or critical violation. Counts kept for the report."""
    results = await AXE.run(page)
    violations = results.response["violations"]
    counts: dict[str, int] = {}
    for v in violations:
        counts[v["impact"] or "unknown"] = counts.get(v["impact"] or "unknown", 0) + len(v["nodes"])
    platform.axe[name] = counts
    blocking = [
        f"{v['id']} ({v['impact']}): {v['help']} — {v['nodes'][0]['target']}"
        for v in violations
        if v["impact"] in BLOCKING
    ]
    assert not blocking, f"{name}: " + "; ".join(blocking)
    if SHOTS and shot:
        folder = ROOT / SHOTS
        folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(folder / f"{shot}.png"), full_page=True)


async def login(page: Page, email: str, password: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def admin_headers(platform: Platform) -> dict[str, str]:
    """The admin's bearer token for set-up through the API, minted again before it can expire (a slow run)."""
    if time.monotonic() - platform.token_at > 300:
        async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
            platform.api_token = (await client.post("/auth/token", json=ADMIN)).json()["access_token"]
        platform.token_at = time.monotonic()
    return {"Authorization": f"Bearer {platform.api_token}"}


async def api(platform: Platform, method: str, path: str, **kwargs: Any) -> Any:
    headers = await admin_headers(platform)
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
        response = await client.request(method, path, headers=headers, **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:300]}"
    return response.json() if response.content else None


async def test_staff_register_approve_and_figures_change_live(browser: Browser, platform: Platform) -> None:
    home = await new_page(browser, platform)
    await login(home, **ADMIN)
    await expect(home.get_by_role("heading", name="District figures")).to_be_visible()
    members = home.locator('[data-figure="members_total"]')
    before = int(re.sub(r"\D", "", await members.inner_text()) or 0)
    await check(home, platform, "home")

    work = await home.context.new_page()
    work.on("dialog", lambda dialog: dialog.accept())
    await work.goto("/members/new")
    await work.get_by_label("Name").fill("CellForge Toscana S.r.l.")
    await work.get_by_label("Kind").select_option("company")
    await work.get_by_label("Biotech").check()
    await work.get_by_label("Province").fill("SI")
    await work.get_by_label("Country").fill("ITALY")  # the service refuses it: the message goes next to the field
    await work.get_by_role("button", name="Save").click()
    await expect(work.locator("#country-error")).to_contain_text("2 characters")
    await expect(work.get_by_label("Name")).to_have_value("CellForge Toscana S.r.l.")  # nothing typed is lost
    await check(work, platform, "members: form with errors", "member-form-errors")
    await work.get_by_label("Country").fill("IT")
    await work.get_by_label("Research competences").fill("cell therapy, CAR-T manufacturing")
    await work.get_by_role("button", name="Save").click()
    await expect(work.get_by_text("The organisation was registered.")).to_be_visible()
    organisation_url = work.url.split("?")[0]
    platform.state["cellforge"] = organisation_url.rsplit("/", 1)[1]

    contact = f"chiara.neri.{uuid.uuid4().hex[:6]}@cellforge.example"
    await work.get_by_label("First name").fill("Chiara")
    await work.get_by_label("Last name").fill("Neri")
    await work.locator("#c-email").fill(contact)
    await work.get_by_label("Agrees to receive the newsletter").check()
    await work.get_by_label("Agrees to the processing of personal data").check()
    await work.get_by_role("button", name="Add contact").click()
    await expect(work.get_by_role("cell", name=contact)).to_be_visible()

    await work.locator("#fig-year").fill("2025")
    await work.locator("#fig-staff").fill("42")
    await work.locator("#fig-rd_staff").fill("12")
    await work.locator("#fig-turnover_eur").fill("3000000")
    await work.get_by_role("button", name="Save figures").click()
    await expect(work.locator("#figures table")).to_contain_text("2025")

    mails = await home.context.new_page()
    await mails.goto("/newsletter")
    welcomed = int(re.sub(r"\D", "", await mails.get_by_test_id("welcome-sent").inner_text()) or 0)

    await work.get_by_role("button", name="Approve").click()
    await expect(work.locator("h1 .badge")).to_have_text("Active")
    await expect(work.locator("#history")).to_contain_text("Applied → Active")
    await check(work, platform, "members: organisation", "organisation")

    # the home page, never reloaded, counts one more member and tells who joined
    await expect(members).to_have_text(str(before + 1), timeout=LONG)
    await expect(home.locator("[data-feed]")).to_contain_text("CellForge Toscana S.r.l. joined", timeout=LONG)
    await check(home, platform, "home (after the live update)", "home-live")

    # the welcome mail reached the catcher
    async def welcome() -> bool:
        async with httpx.AsyncClient(base_url=platform.catcher) as c:
            return (await c.get("/api/messages", params={"to": contact})).json()["total"] > 0

    await wait_for(welcome, timeout=90, what="the welcome mail")

    # … and the newsletter page counts it
    async def counted() -> bool:
        await mails.reload()
        return await mails.get_by_test_id("welcome-sent").inner_text() == str(welcomed + 1)

    await wait_for(counted, timeout=90, what="the welcome mail counted on the newsletter page")
    await check(mails, platform, "newsletter: lists, campaigns, mails", "newsletter")

    # the register lists it; filters and sorting work from the page
    await work.goto("/members?kind=company&sort=name&dir=desc")
    await expect(work.get_by_role("link", name="CellForge Toscana S.r.l.")).to_be_visible()
    await check(work, platform, "members: register", "members")


async def test_cordis_import_and_the_timeline(browser: Browser, platform: Platform, tmp_path: Path) -> None:
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    project_csv = tmp_path / "project.csv"
    project_csv.write_text(
        '"id";"acronym";"status";"title";"startDate";"endDate";"totalCost";"ecMaxContribution";"legalBasis";'
        '"topics";"ecSignatureDate";"frameworkProgramme";"masterCall";"subCall";"fundingScheme";"objective";'
        '"contentUpdateDate";"rcn";"grantDoi";"keywords"\n'
        '"101199001";"MAMMOSCREEN";"SIGNED";"AI-assisted breast cancer screening";"2025-01-01";"2028-12-31";'
        '"4500000";"4500000";"HORIZON.2.1";"HORIZON-MISS-2024-CANCER-01";"2024-11-20";"HORIZON";'
        '"HORIZON-MISS-2024-CANCER-01";"HORIZON-MISS-2024-CANCER-01";"HORIZON-RIA";"Screening with AI.";'
        '"2025-01-10 10:00:00";"1";"";"oncology"\n'
    )
    await page.goto("/projects/import")
    await check(page, platform, "projects: CORDIS import")
    await page.get_by_label("project.csv (CORDIS export)").set_input_files(str(project_csv))
    await page.get_by_role("button", name="Import").click()
    await expect(page.get_by_text("The project was imported from CORDIS.")).to_be_visible()
    await expect(page.locator("h1")).to_contain_text("MAMMOSCREEN")

    await page.locator("#d-number").fill("D3.2")
    await page.locator("#d-title").fill("Screening pilot report")
    await page.locator("#d-due_month").fill("18")
    await page.get_by_role("button", name="Add deliverable").click()
    await page.locator("#m-number").fill("MS1")
    await page.locator("#m-title").fill("Pilot sites ready")
    await page.locator("#m-due_month").fill("6")
    await page.get_by_role("button", name="Add milestone").click()
    table = page.get_by_test_id("timeline-table")
    await expect(table.locator("tbody tr").nth(0)).to_contain_text("M6")
    await expect(table.locator("tbody tr").nth(1)).to_contain_text("M18")
    await expect(table.locator("tbody tr").nth(1)).to_contain_text("30 Jun 2026")  # M18 of a January 2025 start
    await page.get_by_role("button", name="Submit D3.2").click()
    await expect(page.locator("#deliverables")).to_contain_text("Submitted")
    await check(page, platform, "projects: project", "project")
    await page.goto("/projects")
    await expect(page.get_by_role("link", name="MAMMOSCREEN")).to_be_visible()
    await check(page, platform, "projects: list", "projects")


async def test_template_preview_and_a_campaign_to_the_end(browser: Browser, platform: Platform) -> None:
    slug = f"news-{uuid.uuid4().hex[:6]}"
    await api(platform, "POST", "/api/newsletter/lists", json={"slug": slug, "name": "Notizie del distretto"})
    for n in range(4):  # three read about oncology; the fourth, on the list too, does not
        await api(
            platform,
            "POST",
            "/api/newsletter/subscribers",
            json={
                "email": f"reader{n}.{slug}@example.org",
                "name": f"Reader {n}",
                "lists": [slug],
                "interests": ["oncology"] if n < 3 else ["sport"],
                "preconfirmed": True,
            },
        )
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto("/newsletter/templates/new")
    await page.get_by_label("Name").fill("Monthly")
    await page.get_by_label("Subject").fill("Notizie: {{ campaign.name }}")
    await page.get_by_label("HTML body").fill(
        "<h1>{{ campaign.name }}</h1><p>Gentile {{ subscriber.name }}, benvenuta.</p>"
    )
    await page.get_by_label("Text body").fill("Gentile {{ subscriber.name }}, benvenuta.")
    await expect(page.get_by_test_id("preview-text")).to_have_text("Gentile Maria Rossi, benvenuta.")
    await expect(page.frame_locator("[data-testid=preview-html]").locator("p")).to_have_text(
        "Gentile Maria Rossi, benvenuta."
    )
    await check(page, platform, "newsletter: template", "template")
    await page.get_by_role("button", name="Save template").click()
    await expect(page.get_by_text("Saved.")).to_be_visible()

    await page.get_by_role("link", name="Use it in a campaign").click()
    await page.get_by_label("Name").fill("Dicembre")
    await page.get_by_label("Subject").fill("Notizie di dicembre")
    await page.get_by_label(re.compile("Notizie del distretto")).check()
    # the service counts the choice as the start will select it: the list's four readers, three with the interest
    await expect(page.get_by_test_id("audience-count")).to_have_text("Recipients if started now: 4")
    await page.get_by_label("Only subscribers interested in").fill("oncology")
    await expect(page.get_by_test_id("audience-count")).to_have_text("Recipients if started now: 3")
    await check(page, platform, "newsletter: new campaign")
    await page.get_by_role("button", name="Create the campaign (draft)").click()
    # the draft shows the service's exact count: the list's readers with the chosen interest
    await expect(page.get_by_test_id("recipients")).to_contain_text("Recipients if started now: 3")
    await page.get_by_label("Send a test to").fill("editor@example.org")
    await page.get_by_role("button", name="Send test").click()
    await expect(page.get_by_role("status")).to_contain_text("editor@example.org: sent")
    await page.get_by_role("button", name="Start now").click()
    await expect(page.get_by_test_id("campaign-status")).to_have_text("Finished", timeout=LONG)
    await expect(page.get_by_test_id("sent")).to_have_text("3")
    await check(page, platform, "newsletter: campaign", "campaign")

    # the count shown before the start is the number of mails that arrived
    async with httpx.AsyncClient(base_url=platform.catcher) as c:
        caught = (await c.get("/api/messages", params={"limit": 500})).json()["items"]
    arrived = {m["to"][0] for m in caught if m["subject"] == "Notizie di dicembre" and slug in m["to"][0]}
    assert arrived == {f"reader{n}.{slug}@example.org" for n in range(3)}


async def segment_register(platform: Platform) -> tuple[str, str]:
    """Four organisations sharing a keyword of their own, five contacts (bruno without consent):
    Alfa Bio (biotech, PI: anna, bruno), Beta Pharma (pharma, PI: carla), Gamma Bio (biotech, SI:
    dario), Delta Bio (biotech, LU: elena). Returns ``(tag, keyword)`` once the newsletter's
    audience has all four consenting contacts under that keyword (the register reaches it by events)."""
    tag = uuid.uuid4().hex[:6]
    keyword = f"organoids-{tag}"
    register = [  # name, kind, sector, province, contacts (first name, consents to the newsletter)
        ("Alfa Bio", "company", "biotech", "PI", [("anna", True), ("bruno", False)]),
        ("Beta Pharma", "company", "pharma", "PI", [("carla", True)]),
        ("Gamma Bio", "university", "biotech", "SI", [("dario", True)]),
        ("Delta Bio", "company", "biotech", "LU", [("elena", True)]),
    ]
    for name, kind, sector, province, people in register:
        org = await api(
            platform,
            "POST",
            "/api/membership/organisations",
            json={
                "name": f"{name} {tag}",
                "kind": kind,
                "sectors": [sector],
                "province": province,
                "keywords": [keyword],
            },
        )
        for first, consents in people:
            await api(
                platform,
                "POST",
                f"/api/membership/organisations/{org['id']}/contacts",
                json={
                    "first_name": first.title(),
                    "last_name": "Test",
                    "email": f"{first}.{tag}@segmenti.example",
                    "consent_newsletter": consents,
                    "consent_data_processing": True,
                },
            )

    async def in_the_audience() -> bool:
        rule = {"field": "keyword", "any_of": [keyword]}
        found = await api(platform, "POST", "/api/newsletter/segments/preview", json={"rule": rule})
        return bool(found["total"] == 4)

    await wait_for(in_the_audience, timeout=90, what="the register's contacts in the newsletter's audience")
    return tag, keyword


async def test_campaign_to_a_segment_reaches_exactly_its_members(browser: Browser, platform: Platform) -> None:
    """Staff choose a segment on the new-campaign form: its live count and first members are the
    register's biotech organisations with the keyword outside Lucca, contacts who consented only;
    the campaign goes to exactly those people, though the members list holds more."""
    tag, keyword = await segment_register(platform)
    expected = [f"anna.{tag}@segmenti.example", f"dario.{tag}@segmenti.example"]
    segment = await api(
        platform,
        "POST",
        "/api/newsletter/segments",
        json={
            "name": f"Biotech {tag}",
            "rule": {
                "all": [
                    {"field": "keyword", "any_of": [keyword]},
                    {"field": "sector", "any_of": ["biotech"]},
                    {"none": [{"field": "province", "any_of": ["LU"]}]},
                ]
            },
        },
    )
    template = await api(
        platform,
        "POST",
        "/api/newsletter/templates",
        json={
            "name": f"Bandi {tag}",
            "subject": "Bandi",
            "body_html": "<p>Gentile {{ subscriber.name }}, un nuovo bando.</p>",
            "body_text": "Gentile {{ subscriber.name }}, un nuovo bando.",
        },
    )

    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto("/newsletter/campaigns/new")
    await page.get_by_label("Name").fill(f"Bandi biotech {tag}")
    await page.get_by_label("Subject").fill(f"Bandi biotech {tag}")
    await page.get_by_label("Template").select_option(template["id"])
    await page.get_by_label(re.compile(r"Member organisations \(\d+\)")).check()
    recipients = page.locator("#recipients")
    await page.get_by_label(f"Biotech {tag}", exact=True).check()
    # the segment now: its count and its members by address, exactly the register's biotech contacts outside Lucca
    await expect(recipients).to_contain_text(
        f"Segment “Biotech {tag}”: 2 people now. For example: {expected[0]}, {expected[1]}"
    )
    await expect(page.get_by_test_id("audience-count")).to_have_text("Recipients if started now: 2")
    await check(page, platform, "newsletter: new campaign with a segment", "campaign-segment")
    await page.get_by_role("button", name="Create the campaign (draft)").click()
    await expect(page.get_by_test_id("recipients")).to_contain_text("Recipients if started now: 2")
    await expect(page.get_by_test_id("campaign-segments")).to_have_text(f"Biotech {tag}")
    await page.get_by_role("button", name="Start now").click()
    await expect(page.get_by_test_id("campaign-status")).to_have_text("Finished", timeout=LONG)
    await expect(page.get_by_test_id("sent")).to_have_text("2")
    await check(page, platform, "newsletter: campaign to a segment")

    # exactly the segment's members received it; carla (pharma), elena (Lucca) and bruno (no consent) did not
    async with httpx.AsyncClient(base_url=platform.catcher) as c:
        caught = (await c.get("/api/messages", params={"limit": 500})).json()["items"]
    arrived = sorted((m["to"][0], m["subject"]) for m in caught if tag in m["to"][0])
    assert arrived == [(to, f"Bandi biotech {tag}") for to in expected], arrived
    campaign = await api(platform, "GET", "/api/newsletter/campaigns/" + page.url.split("?")[0].rsplit("/", 1)[1])
    assert campaign["segments"] == [segment["id"]] and campaign["stats"]["sent"] == 2, campaign


async def test_staff_define_and_edit_a_segment_on_its_page(browser: Browser, platform: Platform) -> None:
    """The segment page: conditions chosen on the form, the service's refusal next to them with
    nothing typed lost, the members as the rule is written, the count in the list, an edit."""
    tag, keyword = await segment_register(platform)
    address = "{}." + tag + "@segmenti.example"
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto("/newsletter")
    await page.get_by_role("link", name="Segments", exact=True).click()
    await page.get_by_role("link", name="New segment").click()
    await page.get_by_label("Name").fill(f"Organoidi {tag}")
    await page.get_by_label("Attribute of condition 1").select_option("keyword")
    await page.get_by_label("Values of condition 1").fill(keyword)
    await page.get_by_label("Attribute of condition 2").select_option("sector")
    await page.get_by_label("Values of condition 2").fill("biotech")
    await page.get_by_label("Attribute of condition 3").select_option("kind")
    await page.get_by_label("Values of condition 3").fill("spaceship")
    await page.get_by_label("Values of condition 3").press("Tab")
    preview = page.get_by_test_id("segment-preview")
    await expect(preview).to_contain_text("unknown kind")  # the service's reason, while writing
    await page.get_by_role("button", name="Save the segment").click()
    await expect(page.locator(".field-error, [role=alert]").first).to_contain_text("unknown kind")
    await expect(page.get_by_label("Name")).to_have_value(f"Organoidi {tag}")  # nothing typed is lost
    await expect(page.get_by_label("Values of condition 1")).to_have_value(keyword)
    await expect(page.get_by_label("Values of condition 3")).to_have_value("spaceship")

    # biotech with the keyword, outside Lucca: anna and dario (bruno gave no consent, carla is pharma)
    await page.get_by_label("Attribute of condition 3").select_option("province")
    await page.get_by_label("Operator of condition 3").select_option("none_of")
    await page.get_by_label("Values of condition 3").fill("LU")
    await page.get_by_label("Values of condition 3").press("Tab")
    await expect(preview).to_have_text(
        f"2 people now. For example: {address.format('anna')}, {address.format('dario')}"
    )
    await check(page, platform, "newsletter: segment form", "segment")
    await page.get_by_role("button", name="Save the segment").click()
    await expect(page.get_by_role("status")).to_contain_text("The segment was saved.")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"Organoidi {tag}", exact=True))
    await expect(row.get_by_test_id("segment-count")).to_have_text("2")
    await check(page, platform, "newsletter: segments", "segments")
    stored = await api(platform, "GET", f"/api/newsletter/segments/Organoidi {tag}")
    assert stored["rule"] == {
        "all": [
            {"field": "keyword", "any_of": [keyword]},
            {"field": "sector", "any_of": ["biotech"]},
            {"field": "province", "none_of": ["LU"]},
        ]
    }, stored

    # edited: any biotech with the keyword, Lucca too — elena joins; the list counts three
    await row.get_by_role("link", name=f"Organoidi {tag}").click()
    await expect(page.get_by_label("Values of condition 3")).to_have_value("LU")
    await expect(preview).to_contain_text("2 people now.")  # the stored rule's members, on opening
    await page.get_by_label("Values of condition 3").fill("")
    await page.get_by_role("button", name="Save the segment").click()
    await expect(row.get_by_test_id("segment-count")).to_have_text("3")

    # a draft campaign targets it: deleting is refused, said on the page; once the draft is gone, deleted
    template = await api(
        platform,
        "POST",
        "/api/newsletter/templates",
        json={"name": f"Organoidi {tag}", "subject": "Organoidi", "body_html": "<p>Ciao</p>", "body_text": "Ciao"},
    )
    draft = await api(
        platform,
        "POST",
        "/api/newsletter/campaigns",
        json={
            "name": f"Organoidi {tag}",
            "subject": "Organoidi",
            "template_id": template["id"],
            "lists": ["members"],
            "segments": [stored["id"]],
        },
    )
    await row.get_by_role("link", name=f"Organoidi {tag}").click()
    await page.get_by_role("button", name="Delete the segment").click()  # the confirmation is accepted
    await expect(page.get_by_role("alert")).to_contain_text("campaigns not yet started target this segment")
    await api(platform, "POST", f"/api/newsletter/campaigns/{draft['id']}/cancel")
    await page.get_by_role("button", name="Delete the segment").click()
    await expect(page.get_by_role("status")).to_contain_text("The segment was deleted.")
    await expect(page.get_by_role("link", name=f"Organoidi {tag}", exact=True)).to_have_count(0)

    # in Italian
    await page.get_by_role("link", name="IT", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Segmenti")
    await expect(page.get_by_role("columnheader", name="Persone ora")).to_be_visible()


async def test_subscriber_search_over_everyone(browser: Browser, platform: Platform) -> None:
    """The search box finds a person however many subscribers came before (the service searches)."""
    tag = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(base_url=platform.url, timeout=60) as client:
        headers = await admin_headers(platform)
        for n in range(205):
            body = {"email": f"crowd{n:03d}.{tag}@example.org", "lists": [], "consent_source": "import"}
            response = await client.post("/api/newsletter/subscribers", json=body, headers=headers)
            assert response.status_code == 201, response.text
    late = f"giulia.{tag}@ospedale.example"
    await api(
        platform, "POST", "/api/newsletter/subscribers", json={"email": late, "name": "Giulia Verdi", "lists": []}
    )
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto("/newsletter/subscribers")
    await page.get_by_label("Search email or name").fill(f"giulia.{tag}")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("cell", name=late)).to_be_visible()
    await expect(page.get_by_text("1 subscribers in the service for these filters.")).to_be_visible()
    # the crowd, searched and paged by the service: 205 people, 50 a page
    await page.get_by_label("Search email or name").fill(f"{tag}@example.org")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_text("Page 1 of 5")).to_be_visible()
    await page.get_by_role("link", name="Next").click()
    await expect(page.get_by_role("cell", name=f"crowd050.{tag}@example.org")).to_be_visible()
    await expect(page.get_by_label("Search email or name")).to_have_value(f"{tag}@example.org")
    await check(page, platform, "newsletter: subscribers (search)", "subscribers")


async def test_members_sorted_across_all_pages(browser: Browser, platform: Platform) -> None:
    """A column sorts the whole register, not the page shown: page 2 goes on where page 1 stopped."""
    tag = f"Sortable {uuid.uuid4().hex[:6]}"
    for n in range(27):
        await api(platform, "POST", "/api/membership/organisations", json={"name": f"{tag} {n:02d}", "kind": "company"})
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto("/members?" + urlencode({"q": tag}))
    names = page.locator("#register tbody tr td:first-child")
    await expect(names.first).to_have_text(f"{tag} 00")
    await (
        page.locator("#register thead").get_by_role("link", name="Name").click()
    )  # sorted by name already: now descending
    await expect(page.locator("th[aria-sort=descending]")).to_contain_text("Name")
    await expect(names.first).to_have_text(f"{tag} 26")
    await expect(names.nth(24)).to_have_text(f"{tag} 02")
    await page.get_by_role("link", name="Next").click()
    await expect(names).to_have_text([f"{tag} 01", f"{tag} 00"])
    assert "q=Sortable" in page.url and "dir=desc" in page.url  # the filter and the order kept


async def test_member_own_figures_other_members_page_and_a_match(browser: Browser, platform: Platform) -> None:
    own = platform.state.get("cellforge")
    if own is None:  # the staff test registers it; alone, register one through the API
        created = await api(
            platform, "POST", "/api/membership/organisations", json={"name": "CellForge S.r.l.", "kind": "company"}
        )
        own = created["id"]
    other = (
        await api(
            platform, "POST", "/api/membership/organisations", json={"name": "Altra Bio S.p.A.", "kind": "company"}
        )
    )["id"]
    # another *member*: an application is not public at all (404), a member's record is (its figures are not)
    await api(platform, "POST", f"/api/membership/organisations/{other}/approve", json={})
    email = f"member.{uuid.uuid4().hex[:6]}@cellforge.example"
    await api(
        platform,
        "POST",
        "/auth/users",
        json={"email": email, "password": "member-password-1", "role": "member", "organisation_id": own},
    )
    # a proposed match between an opportunity of its own and one of the other member
    ours = await api(
        platform, "POST", "/api/matchmaking/opportunities", json=_opportunity(own, "Closed-system CAR-T manufacturing")
    )
    theirs = await api(
        platform, "POST", "/api/matchmaking/opportunities", json=_opportunity(other, "Looking for CAR-T manufacturing")
    )
    match = await api(
        platform,
        "POST",
        "/api/matchmaking/matches",
        json={"opportunity_id": ours["id"], "counterpart_type": "opportunity", "counterpart_id": theirs["id"]},
    )
    pending: list[str] = []  # checks the services do not allow yet; reported as pending, never as passed

    page = await new_page(browser, platform)
    await login(page, email, "member-password-1")
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Matchmaking")).to_be_visible()
    await expect(nav.get_by_role("link", name="Newsletter")).to_have_count(0)
    await expect(nav.get_by_role("link", name="Administration")).to_have_count(0)
    await page.goto("/newsletter")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Not yours to see")

    # another member's page: the 403 page
    await page.goto(f"/members/{other}")
    heading = page.get_by_role("heading", level=1)
    await expect(heading).not_to_be_empty()
    if "Not yours to see" in await heading.inner_text():
        await check(page, platform, "403 page", "forbidden")
    else:
        pending.append("the membership service still lets a member read another member's yearly figures")

    # its own page: the figures form
    await page.goto(f"/members/{own}")
    await check(page, platform, "members: own organisation (member)")
    await page.locator("#fig-year").fill("2026")
    await page.locator("#fig-staff").fill("50")
    await page.get_by_role("button", name="Save figures").click()
    await expect(page.get_by_role("heading", level=1)).not_to_be_empty()
    if "Not yours to see" in await page.get_by_role("heading", level=1).inner_text():
        pending.append("the gateway refuses a member's write of its own figures (PUT …/figures/{year} is staff-only)")
    else:
        await expect(page.locator("#figures table")).to_contain_text("2026")

    # the match board: accept the proposed match for its own side
    await page.goto("/matchmaking")
    card = page.locator("article.card").filter(has_text="Closed-system CAR-T manufacturing")
    await expect(card).to_be_visible()
    await check(page, platform, "matchmaking: board (member)", "matchmaking")
    await card.get_by_role("button", name="Accept").click()
    await expect(page.get_by_role("heading", level=1)).not_to_be_empty()
    if "Not yours to see" in await page.get_by_role("heading", level=1).inner_text():
        pending.append("the gateway refuses a member's acceptance of its own match (…/accept is staff-only)")
    else:
        # its own side answered; the match is accepted once the other member accepts too
        answered = await api(platform, "GET", f"/api/matchmaking/matches/{match['id']}")
        assert (answered["opportunity_side"], answered["counterpart_side"]) == ("accepted", "pending")
        await expect(page.locator("#col-accepted")).to_contain_text("(0)")
    if pending:
        pytest.xfail("pending on the services' member authorisation (issue 10): " + "; ".join(pending))


def _opportunity(owner: str, title: str) -> dict[str, Any]:
    return {
        "opportunity_type": "technology_offer" if "Closed" in title else "technology_request",
        "owner_organisation_id": owner,
        "title": title,
        "summary": "Automated closed-system manufacturing of CAR-T cells for oncology trials.",
        "keywords": ["CAR-T", "cell therapy"],
        "sectors": ["biotech"],
    }


async def test_public_signs_up_and_confirms_from_the_mail(browser: Browser, platform: Platform) -> None:
    lists = await api(platform, "GET", "/api/newsletter/lists", params={"limit": 200})
    if "events" not in {lst["slug"] for lst in lists["items"]}:
        await api(platform, "POST", "/api/newsletter/lists", json={"slug": "events", "name": "Events"})
    page = await new_page(browser, platform, locale="it-IT", phone=True)
    await page.goto("/public")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Il distretto toscano delle scienze della vita in numeri"
    )
    await check(page, platform, "public: figures (it, phone)", "public-figures-phone")
    email = f"curious.{uuid.uuid4().hex[:6]}@example.org"
    await page.goto("/public/newsletter")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Events").check()
    await page.get_by_role("button", name="Iscriviti").click()
    await expect(page.locator("#consent-error")).to_be_visible()  # consent is required, said next to the box
    await page.get_by_label(re.compile("Acconsento")).check()
    await page.get_by_role("button", name="Iscriviti").click()
    await expect(page.get_by_role("status")).to_contain_text("Quasi fatto")
    await check(page, platform, "public: sign-up (it, phone)", "signup")

    async def confirmation() -> str | None:
        async with httpx.AsyncClient(base_url=platform.catcher) as c:
            found = (await c.get("/api/messages", params={"to": email})).json()["items"]
            if not found:
                return None
            detail = (await c.get(f"/api/messages/{found[0]['number']}")).json()
        link = re.search(r"https?://\S+/confirm\?token=[\w.\-~%]+", detail.get("text") or "")
        return link.group(0) if link else None

    link = await wait_for(confirmation, timeout=90, what="the confirmation mail")
    await page.goto(link)
    await page.get_by_role("button").click()
    await expect(page.locator("body")).to_contain_text("confirmed")


async def test_api_key_with_scope_and_expiry_shown_once_then_revoked(browser: Browser, platform: Platform) -> None:
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto("/admin")
    name = f"LIMS {uuid.uuid4().hex[:6]}"
    await page.locator("#k-name").fill(name)
    await page.locator("#k-scopes").fill("GET /api/projects/*")
    await page.get_by_role("button", name="Create key").click()  # no expiry: the gateway refuses
    await expect(page.locator(".error, [role=alert]").first).to_contain_text("expiry")
    await expect(page.locator("#k-scopes")).to_have_value("GET /api/projects/*")  # nothing typed is lost
    await page.locator("#k-expires_at").fill("2099-01-31")  # beyond the gateway's limit: refused, said so
    await page.get_by_role("button", name="Create key").click()
    await expect(page.locator(".error, [role=alert]").first).to_contain_text("at most")
    expires = date.today() + timedelta(days=90)
    await page.locator("#k-expires_at").fill(expires.isoformat())
    await page.get_by_role("button", name="Create key").click()
    key = (await page.get_by_test_id("issued-key").inner_text()).strip()
    row = page.get_by_role("row").filter(has_text=name)
    await expect(row).to_contain_text(format_date(expires, "medium", locale="en_GB"))
    await expect(row).to_contain_text("GET /api/projects/*")
    await check(page, platform, "administration (a key issued)", "admin")
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as c:
        assert (await c.get("/api/projects/projects", headers={"X-API-Key": key})).status_code == 200
        outside = await c.get("/api/membership/organisations", headers={"X-API-Key": key})
        assert outside.status_code == 403, outside.text  # outside its scope
    await page.goto("/admin")
    await expect(page.get_by_test_id("issued-key")).to_have_count(0)  # shown once
    await row.get_by_role("button", name="Revoke").click()
    await expect(row).to_contain_text("revoked")
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as c:
        assert (await c.get("/api/projects/projects", headers={"X-API-Key": key})).status_code == 401


async def test_both_languages_and_the_error_pages(browser: Browser, platform: Platform) -> None:
    english = await new_page(browser, platform, locale="en-GB")
    await english.goto("/login")
    await expect(english.get_by_role("heading", level=1)).to_have_text("Log in")
    await check(english, platform, "login (en)", "login")
    italian = await new_page(browser, platform, locale="it-IT")
    await italian.goto("/login")
    await expect(italian.get_by_role("heading", level=1)).to_have_text("Accedi")
    await italian.get_by_role("link", name="EN", exact=True).click()  # the switch wins over the browser's language
    await expect(italian.get_by_role("heading", level=1)).to_have_text("Log in")
    await english.goto("/no/such/page")
    await expect(english.get_by_role("heading", level=1)).to_contain_text("Page not found")
    await check(english, platform, "404 page")


async def test_members_csv_import_shows_each_bad_line_then_imports_and_exports(
    browser: Browser, platform: Platform
) -> None:
    tag = f"Csvtest {uuid.uuid4().hex[:6]}"
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto("/members/import")
    bad = (
        "name,kind,sectors,province\n"  # line 1
        f"{tag} Alfa,company,biotech,PI\n"  # line 2
        f"{tag} Beta,spaceship,biotech,FI\n"  # line 3: no such kind
        ",company,pharma,SI\n"  # line 4: no name
        f"{tag} Gamma,research_institute,,LU\n"  # line 5
    )
    upload = page.get_by_label("CSV file")
    await upload.set_input_files({"name": "members.csv", "mimeType": "text/csv", "buffer": bad.encode()})
    await page.get_by_role("button", name="Import").click()
    errors = page.get_by_role("table").filter(has_text="Lines with errors (nothing was imported)")
    await expect(errors.locator("tbody tr")).to_have_count(2)
    await expect(errors.locator("tbody tr").nth(0).locator("td").nth(0)).to_have_text("3")
    await expect(errors.locator("tbody tr").nth(0).locator("td").nth(1)).to_contain_text("kind")
    await expect(errors.locator("tbody tr").nth(1).locator("td").nth(0)).to_have_text("4")
    await expect(errors.locator("tbody tr").nth(1).locator("td").nth(1)).to_contain_text("name")
    await check(page, platform, "members: CSV import with errors")
    # nothing of that file is in the register
    found = await api(platform, "GET", "/api/membership/organisations", params={"q": tag})
    assert found["total"] == 0, found

    good = "name,kind,sectors,province\n" + f"{tag} Alfa,company,biotech,PI\n" + f"{tag} Gamma,research_institute,,LU\n"
    await upload.set_input_files({"name": "members.csv", "mimeType": "text/csv", "buffer": good.encode()})
    await page.get_by_role("button", name="Import").click()
    await expect(page.get_by_role("status")).to_contain_text("2 organisations imported.")

    # the register, filtered, exports exactly those two
    await page.goto("/members?" + urlencode({"q": tag}))
    await expect(page.locator("#register tbody tr")).to_have_count(2)
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Export CSV").click()
    download = await info.value
    exported = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text(encoding="utf-8-sig"))))
    assert sorted((row["name"], row["kind"], row["province"]) for row in exported) == [
        (f"{tag} Alfa", "company", "PI"),
        (f"{tag} Gamma", "research_institute", "LU"),
    ], exported


async def test_subscriber_export_and_erase(browser: Browser, platform: Platform) -> None:
    tag = uuid.uuid4().hex[:6]
    email = f"erase.me.{tag}@example.org"
    await api(
        platform,
        "POST",
        "/api/newsletter/subscribers",
        json={"email": email, "name": "Erica Rasa", "lists": [], "consent_source": "import"},
    )
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto("/newsletter/subscribers")
    await page.get_by_label("Search email or name").fill(email)
    await page.get_by_role("button", name="Search").click()
    row = page.get_by_role("row").filter(has_text=email)
    await expect(row).to_have_count(1)
    async with page.expect_download() as info:
        await row.get_by_role("link", name="Export").click()
    exported = json.loads(Path(await (await info.value).path()).read_text())
    assert email in json.dumps(exported) and "Erica Rasa" in json.dumps(exported), exported

    await row.get_by_role("button", name="Erase").click()  # the confirmation is accepted
    await expect(page.get_by_role("status")).to_contain_text("The person's data was erased.")
    await page.get_by_label("Search email or name").fill(email)
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("cell", name="Nobody matches.")).to_be_visible()
    left = await api(platform, "GET", "/api/newsletter/subscribers", params={"q": tag})
    assert left["total"] == 0, left


async def test_campaign_scheduled_started_paused_resumed_cancelled(browser: Browser, platform: Platform) -> None:
    """The service sends one mail a second here, so the campaign is still running when it is paused."""
    slug = f"long-{uuid.uuid4().hex[:6]}"
    readers = 40
    await api(platform, "POST", "/api/newsletter/lists", json={"slug": slug, "name": "Lunga"})
    async with httpx.AsyncClient(base_url=platform.url, timeout=60) as client:
        headers = await admin_headers(platform)
        for n in range(readers):
            body = {"email": f"r{n:02d}.{slug}@example.org", "lists": [slug], "preconfirmed": True}
            response = await client.post(
                "/api/newsletter/subscribers", json={**body, "consent_source": "import"}, headers=headers
            )
            assert response.status_code == 201, response.text
    template = await api(
        platform,
        "POST",
        "/api/newsletter/templates",
        json={"name": f"t-{slug}", "subject": "Lunga", "body_html": "<p>Ciao</p>", "body_text": "Ciao"},
    )
    campaign = await api(
        platform,
        "POST",
        "/api/newsletter/campaigns",
        json={"name": f"Campagna {slug}", "subject": "Lunga", "template_id": template["id"], "lists": [slug]},
    )
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto(f"/newsletter/campaigns/{campaign['id']}")
    status = page.get_by_test_id("campaign-status")
    await expect(status).to_have_text("Draft")
    when = date.today() + timedelta(days=7)
    await page.get_by_label("Send at (Italian time)").fill(f"{when.isoformat()}T09:30")
    await page.get_by_role("button", name="Schedule", exact=True).click()
    await expect(status).to_have_text("Scheduled")
    await expect(page.get_by_text("Planned for")).to_contain_text(f"{when:%d/%m/%Y}, 09:30")  # Italian time
    await expect(page.get_by_test_id("recipients")).to_contain_text(f"Recipients if started now: {readers}")

    await page.get_by_role("button", name="Start now").click()
    await expect(status).to_have_text("Running")
    await page.get_by_role("button", name="Pause").click()
    await expect(status).to_have_text("Paused")
    await expect(page.get_by_role("button", name="Resume")).to_be_visible()
    await page.get_by_role("button", name="Resume").click()
    await expect(status).to_have_text("Running")
    await page.get_by_role("button", name="Cancel").click()
    await expect(status).to_have_text("Cancelled")
    await check(page, platform, "newsletter: campaign cancelled")
    final = await api(platform, "GET", f"/api/newsletter/campaigns/{campaign['id']}")
    assert final["status"] == "cancelled" and final["stats"].get("sent", 0) < readers, final
    sent = int(re.sub(r"\D", "", await page.get_by_test_id("sent").inner_text()) or 0)
    assert sent < readers


async def test_users_and_roles_in_administration(browser: Browser, platform: Platform) -> None:
    email = f"editor.{uuid.uuid4().hex[:6]}@distretto.example"
    password = "editor-password-1"
    admin = await new_page(browser, platform)
    await login(admin, **ADMIN)
    await admin.goto("/admin")
    await admin.locator("#u-email").fill(email)
    await admin.locator("#u-password").fill(password)
    await admin.locator("#u-role").select_option("staff")
    await admin.get_by_role("button", name="Create user").click()
    row = admin.get_by_role("row").filter(has_text=email)
    await expect(row).to_contain_text("Staff")

    # the new user logs in as staff and sees the staff's navigation
    person = await new_page(browser, platform)
    await login(person, email, password)
    nav = person.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Newsletter")).to_be_visible()

    # a new role ends the session; logged in again, the partner's navigation has no newsletter
    await row.get_by_label(f"Role of {email}").select_option("partner")
    await row.get_by_role("button", name="Save").click()
    await expect(admin.get_by_role("row").filter(has_text=email)).to_contain_text("Partner")
    await person.goto("/newsletter")
    await expect(person).to_have_url(re.compile(r"/login"))
    await login(person, email, password)
    await expect(nav.get_by_role("link", name="Newsletter")).to_have_count(0)

    # disabled: the session ends and the password no longer opens one
    row = admin.get_by_role("row").filter(has_text=email)
    await row.get_by_label(f"Account of {email}").select_option("false")
    await row.get_by_role("button", name="Save").click()
    await expect(admin.get_by_role("row").filter(has_text=email).locator("td").nth(3)).to_have_text("no")
    await person.goto("/")
    await expect(person).to_have_url(re.compile(r"/login"))
    await person.get_by_label("Email").fill(email)
    await person.get_by_label("Password").fill(password)
    await person.get_by_role("button", name="Log in").click()
    await expect(person.get_by_text("Wrong email or password.")).to_be_visible()
    await expect(person.get_by_role("button", name="Log out")).to_have_count(0)
    await check(admin, platform, "administration (users)")


async def test_staff_opportunity_and_the_match_board_to_the_feedback(browser: Browser, platform: Platform) -> None:
    tag = uuid.uuid4().hex[:6]
    owner = (
        await api(platform, "POST", "/api/membership/organisations", json={"name": f"Owner {tag}", "kind": "company"})
    )["id"]
    other = (
        await api(platform, "POST", "/api/membership/organisations", json={"name": f"Other {tag}", "kind": "company"})
    )["id"]
    page = await new_page(browser, platform)
    await login(page, **ADMIN)
    await page.goto("/matchmaking")
    await page.get_by_role("link", name="New opportunity").click()
    await page.get_by_label("Type").select_option("technology_offer")
    await page.get_by_label("Title").fill(f"Organoid screening {tag}")
    await page.get_by_label("Summary").fill("Patient-derived organoids for drug screening in oncology.")
    await page.get_by_label("Keywords").fill("organoids, drug screening")
    await page.get_by_label("Biotech").check()
    await page.get_by_label("Owner organisation id").fill(owner)
    await page.get_by_role("button", name="Publish").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Organoid screening {tag}")
    created = page.url.rstrip("/").rsplit("/", 1)[1]
    await page.get_by_role("link", name="Edit").click()
    await expect(page.get_by_label("Title")).to_have_value(f"Organoid screening {tag}")
    await page.get_by_label("Title").fill(f"Organoid and spheroid screening {tag}")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Organoid and spheroid screening {tag}")
    stored = await api(platform, "GET", f"/api/matchmaking/opportunities/{created}")
    assert stored["title"] == f"Organoid and spheroid screening {tag}" and stored["owner_organisation_id"] == owner

    # an accepted match goes through the board: meeting scheduled, held, feedback
    theirs = await api(
        platform, "POST", "/api/matchmaking/opportunities", json=_opportunity(other, f"Looking for organoids {tag}")
    )
    match = await api(
        platform,
        "POST",
        "/api/matchmaking/matches",
        json={"opportunity_id": created, "counterpart_type": "opportunity", "counterpart_id": theirs["id"]},
    )
    for side in ("opportunity", "counterpart"):
        await api(platform, "POST", f"/api/matchmaking/matches/{match['id']}/accept", json={"side": side})
    await page.goto("/matchmaking")
    card = page.locator(f'article[data-match="{match["id"]}"]')
    await expect(page.locator("#board .column").filter(has=card).locator("h3")).to_contain_text("Accepted")
    meeting = date.today() + timedelta(days=10)
    await card.get_by_label("Meeting on").fill(f"{meeting.isoformat()}T15:00")
    await card.get_by_label("Place").fill("Siena, Toscana Life Sciences")
    await card.get_by_role("button", name="Schedule the meeting").click()
    await expect(card).to_contain_text("Siena, Toscana Life Sciences")
    await expect(page.locator("#board .column").filter(has=card).locator("h3")).to_contain_text("Meeting scheduled")
    await card.get_by_role("button", name="The meeting took place").click()
    await expect(page.locator("#board .column").filter(has=card).locator("h3")).to_contain_text("Meeting held")
    form = card.locator("form").filter(has_text="for the opportunity")
    await form.get_by_label("yes").check()
    await form.get_by_label("Comment").fill("Two samples exchanged.")
    await form.get_by_role("button", name="Send feedback").click()
    await expect(card).to_contain_text("Feedback given: yes")
    await check(page, platform, "matchmaking: board (staff, feedback)")
    answered = await api(platform, "GET", f"/api/matchmaking/matches/{match['id']}")
    assert answered["state"] == "meeting_held" and answered["feedback"].get("opportunity") is True, answered


async def test_accessibility_report(platform: Platform) -> None:
    """Every page checked above had no serious or critical violation; the counts go to the report."""
    assert platform.axe, "no page was checked"
    out = os.environ.get("DISTRETTO_CONSOLE_AXE_REPORT")
    if out:
        Path(out).write_text(json.dumps(platform.axe, indent=2, sort_keys=True))
    for name, counts in platform.axe.items():
        assert not (set(counts) & BLOCKING), (name, counts)
