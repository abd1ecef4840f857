"""The platform end to end, through the gateway only, with every service a real process on the real broker.

An organisation applies and is approved → its welcome mail reaches the SMTP catcher →
matchmaking indexes its profile → the district figures change; and the correlation id
of the approving request is carried into the event it caused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from distretto_dev.testing import (
    ServiceProcess,
    free_port,
    headers_of,
    read_topic,
    start_processes,
    stop_processes,
    wait_for,
)
from distretto_shared.contracts import membership as membership_contracts

ADMIN = {"email": "admin@e2e.example", "password": "e2e-admin-password"}


@dataclass
class Platform:
    gateway: str
    catcher: str
    topic_prefix: str
    bootstrap: str
    logs: Path
    processes: dict[str, ServiceProcess]


@pytest.fixture(scope="module")
async def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    smtp_port, catcher_port = free_port(), free_port()
    ports = {
        name: free_port() for name in ("membership", "projects", "newsletter", "matchmaking", "partners", "gateway")
    }
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_TOPIC_PREFIX": prefix,
        "DISTRETTO_DATA_DIR": str(root / "data"),
    }
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    env = {
        "membership": {},
        "projects": {},
        "newsletter": {
            "NEWSLETTER_SMTP_SERVERS": f"127.0.0.1:{smtp_port}",
            "NEWSLETTER_MEMBERSHIP_URL": f"http://127.0.0.1:{ports['membership']}",
            "NEWSLETTER_LINK_BASE_URL": gateway + "/api/newsletter",
        },
        "matchmaking": {},
        "partners": {},
        "gateway": {
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            # the test scrapes /metrics from loopback, as make up's Prometheus would with its key
            "GATEWAY_METRICS_ALLOWED_ADDRESSES": '["127.0.0.1"]',
            **{f"GATEWAY_{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items() if n != "gateway"},
        },
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
        for name in ("membership", "projects", "newsletter", "matchmaking", "partners", "gateway"):
            proc = ServiceProcess(name, port=ports[name], env={**common, **env[name]}, log_path=root / f"{name}.log")
            procs.append(proc)
        await start_processes(procs)
        async with httpx.AsyncClient() as client:
            for proc in procs:  # every service ready: database, broker, relay
                await wait_for(lambda p=proc: _ready(client, p.url), timeout=90, what=f"{proc.module} ready")
        yield Platform(
            gateway, f"http://127.0.0.1:{catcher_port}", prefix, kafka_bootstrap, root, {p.module: p for p in procs}
        )
    finally:
        stop_processes(procs)
        catcher.terminate()
        catcher.wait(10)


async def _ready(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url + "/readyz", timeout=3)).status_code == 200
    except httpx.HTTPError:
        return False


async def test_member_joins_welcome_mail_match_index_and_figures(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as gw:
        token = (await gw.post("/auth/token", json=ADMIN)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        # The district figures are public.
        before = (await gw.get("/api/membership/figures")).json()

        org = await gw.post(
            "/api/membership/organisations",
            headers=auth,
            json={
                "name": "CellForge Toscana S.r.l.",
                "kind": "company",
                "sectors": ["biotech"],
                "province": "SI",
                "description": "Bottom-up manufacturing of artificial anti-tumour T cells for cancer immunotherapy.",
                "competences": ["cell therapy", "CAR-T manufacturing"],
                "keywords": ["immunotherapy", "oncology"],
            },
        )
        assert org.status_code == 201, org.text
        org_id = org.json()["id"]
        contact = await gw.post(
            f"/api/membership/organisations/{org_id}/contacts",
            headers=auth,
            json={
                "first_name": "Chiara",
                "last_name": "Neri",
                "email": "chiara.neri@cellforge.example",
                "consent_newsletter": True,
                "consent_data_processing": True,
            },
        )
        assert contact.status_code == 201, contact.text
        figures = await gw.put(
            f"/api/membership/organisations/{org_id}/figures/2024",
            headers=auth,
            json={"staff": 42, "rd_staff": 12, "turnover_eur": 3_000_000, "lab_m2": 400, "patents": 3},
        )
        assert figures.status_code in (200, 201), figures.text

        correlation = f"e2e-{uuid.uuid4()}"
        approved = await gw.post(
            f"/api/membership/organisations/{org_id}/approve", headers={**auth, "X-Correlation-ID": correlation}
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "active"

        # 1. The welcome mail reaches the SMTP catcher.
        async def welcome() -> dict | None:
            async with httpx.AsyncClient(base_url=platform.catcher) as c:
                listing = (await c.get("/api/messages")).json()
            items = listing if isinstance(listing, list) else listing.get("items", [])
            return next((m for m in items if "chiara.neri@cellforge.example" in json.dumps(m)), None)

        mail = await wait_for(welcome, timeout=60, interval=0.5, what="welcome mail in the catcher")
        assert "CellForge" in mail["subject"]

        # 2. Matchmaking indexed the new member's competence profile.
        async def profile() -> dict | None:
            r = await gw.get(f"/api/matchmaking/organisations/{org_id}", headers=auth)
            return r.json() if r.status_code == 200 else None

        indexed = await wait_for(profile, timeout=60, interval=0.5, what="profile indexed by matchmaking")
        assert "T cells" in json.dumps(indexed) or "cell therapy" in json.dumps(indexed)

        # 3. The district figures changed.
        after = (await gw.get("/api/membership/figures")).json()
        assert after["members_total"] == before["members_total"] + 1
        assert after["staff"] == before["staff"] + 42
        assert after["by_sector"].get("biotech", 0) == before["by_sector"].get("biotech", 0) + 1

    # The approving request's correlation id is in the event it caused.
    records = await read_topic(
        platform.bootstrap, platform.topic_prefix + membership_contracts.ORGANISATION_TOPIC.name, min_count=2
    )
    joined = [
        headers_of(r) for r in records if headers_of(r)["ce_type"] == membership_contracts.OrganisationJoined.event_type
    ]
    assert [h["correlation_id"] for h in joined] == [correlation]


async def test_every_metrics_endpoint_passes_promtool(platform: Platform) -> None:
    from distretto_shared.monitoring import PROMTOOL_BIN

    if not Path(PROMTOOL_BIN).exists():
        pytest.skip("needs Debian's promtool (make bootstrap installs it)")
    async with httpx.AsyncClient(timeout=20) as client:
        for name, proc in platform.processes.items():
            text = (await client.get(proc.url + "/metrics")).text
            assert "distretto_" in text, name
            check = subprocess.run(
                [PROMTOOL_BIN, "check", "metrics"], input=text, capture_output=True, text=True, check=False
            )
            assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"


async def test_gateway_answers_clear_errors_for_bad_requests_and_a_downed_service(platform: Platform) -> None:
    # Runs last in this module: it stops the projects service.
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as gw:
        anonymous = await gw.get("/api/membership/organisations")
        assert anonymous.status_code == 401 and anonymous.json()["message"]
        token = (await gw.post("/auth/token", json=ADMIN)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        bad = await gw.post("/api/membership/organisations", headers=auth, json={"name": "", "kind": "spaceship"})
        assert bad.status_code == 422 and "kind" in bad.json()["message"]
        not_json = await gw.post(
            "/api/membership/organisations", headers={**auth, "content-type": "application/json"}, content=b"{oops"
        )
        assert not_json.status_code == 422

        platform.processes["projects"].stop()
        down = await gw.get("/api/projects/projects", headers=auth)
        assert down.status_code == 502 and "projects" in down.json()["message"]
        ready = await gw.get("/readyz")
        assert ready.status_code == 503 and "projects" in ready.text
        # The others still answer.
        assert (await gw.get("/api/membership/figures")).status_code == 200


async def test_every_log_line_of_every_process_is_json(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # After the flows above (and the projects service stopped by the previous test).
    logs = sorted(platform.logs.glob("*.log"))
    assert {p.stem for p in logs} >= {"catcher", "membership", "projects", "newsletter", "matchmaking", "gateway"}
    # The session's broker too, when this run started it (its log4j2 log, written so far).
    logs += sorted(tmp_path_factory.getbasetemp().glob("kafka*/kafka/server.log"))
    bad: dict[str, list[str]] = {}
    access = 0
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                bad.setdefault(log.stem, []).append(line[:200])
                continue
            if not isinstance(item, dict):
                bad.setdefault(log.stem, []).append(line[:200])
            elif item.get("event") == "request":
                access += 1
    assert bad == {}
    assert access > 0
