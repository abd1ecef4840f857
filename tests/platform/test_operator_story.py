"""The operator's story of issue "Operators", end to end, as one test — and the `distretto` command line
in a fresh shell.

Every service, the gateway, the console and the mail catcher run as real processes on the real
broker, Debian's Prometheus scrapes them with the project's alert rules (short windows), and the
operator works as a new operator would: every target up; one poison record sent with kcat; the
DeadLetters alert fires (read back from Prometheus' API); in Debian's Chromium the operator (role
``operator``) sees the alert and the dead letters with their reason on the console's operations
page, replays one to the group that failed and sees it resolved (the replay reaches that group
only: it fails again there, one new entry, no other group's), discards the others with a reason.
axe-core checks the page. ``DISTRETTO_CONSOLE_SCREENSHOTS=docs/console`` saves its screenshots.

The command line runs in a fresh shell (``env -i``, PATH /usr/bin:/bin) that only sources the
``var/env.sh`` written the way ``make up`` writes it: status, dlq, logs (also ``--follow`` and
``--check`` of every log file, the broker's included), imports with their progress bar, kafka.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect

from distretto_dev.testing import (
    ServiceProcess,
    free_port,
    headers_of,
    kcat,
    read_topic,
    start_processes,
    stop_processes,
    wait_for,
)
from distretto_shared import monitoring
from distretto_shared.consumer import REPLAY_FOR
from distretto_shared.contracts import membership as membership_contracts
from distretto_shared.dlq import DISCARDED, PENDING, REPLAYED, DeadLetter, list_dead_letters
from distretto_shared.kafka_security import default_credentials

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DISTRETTO_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("DISTRETTO_CONSOLE_SCREENSHOTS")
KCAT = "/usr/bin/kcat"
ADMIN = {"email": "admin@operator-story.example", "password": "operator-story-admin"}
OPERATOR = {"email": "operator@operator-story.example", "password": "operator-story-operator"}
SERVICES = ("membership", "projects", "newsletter", "matchmaking", "gateway", "console")
LONG = 90_000  # ms: the longest a condition may take to become true under load (a bound, not a measure)
CORDIS = ROOT / "services" / "projects" / "tests" / "fixtures"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(not Path(monitoring.PROMETHEUS_BIN).exists(), reason="needs Debian's prometheus"),
    pytest.mark.skipif(not Path(KCAT).exists(), reason="needs kcat (apt-get install kcat)"),
]


@dataclass
class Platform:
    gateway: str
    console: str
    bootstrap: str
    prefix: str
    prometheus: monitoring.PrometheusServer
    home: Path
    ports: dict[str, int]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def poison_topic(self) -> str:
        return self.prefix + membership_contracts.ORGANISATION_TOPIC.name


def _load_stack() -> Any:
    spec = importlib.util.spec_from_file_location("distretto_stack", ROOT / "deploy" / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
async def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    root = tmp_path_factory.mktemp("operator")
    home = root / "home"
    logs = home / "var" / "log"
    logs.mkdir(parents=True)
    prefix = f"ops{uuid.uuid4().hex[:8]}."
    smtp_port, catcher_port, prometheus_port = free_port(), free_port(), free_port()
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
        },
        "matchmaking": {},
        "gateway": {
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            "GATEWAY_READYZ_REQUIRES_UPSTREAMS": "false",  # no partners service here
            "GATEWAY_METRICS_ALLOWED_ADDRESSES": '["127.0.0.1"]',  # the test's Prometheus scrapes from loopback
            "GATEWAY_ANONYMOUS_RATE_LIMIT_PER_MINUTE": "100000",
            "GATEWAY_ANONYMOUS_RATE_LIMIT_BURST": "10000",
            **{f"GATEWAY_{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items() if n != "gateway"},
        },
        "console": {"CONSOLE_GATEWAY_URL": gateway, "CONSOLE_PROMETHEUS_URL": f"http://127.0.0.1:{prometheus_port}"},
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
        stdout=(logs / "catcher.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs: list[ServiceProcess] = []
    try:
        for name in SERVICES:
            proc = ServiceProcess(name, port=ports[name], env={**common, **env[name]}, log_path=logs / f"{name}.log")
            procs.append(proc)
        await start_processes(procs, timeout=120)
        # Logging in hashes a password: on a loaded machine that can take longer than httpx's 5 s.
        async with httpx.AsyncClient(timeout=60) as client:
            for proc in procs:
                await wait_for(lambda p=proc: _ready(client, p.url), timeout=120, what=f"{proc.module} ready")
            token = (await client.post(gateway + "/auth/token", json=ADMIN)).json()["access_token"]
            made = await client.post(
                gateway + "/auth/users",
                json={**OPERATOR, "role": "operator"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert made.status_code == 201, made.text
        addresses = {name: [f"127.0.0.1:{port}"] for name, port in ports.items()}
        thresholds = monitoring.fast_thresholds(service_jobs=tuple(addresses))
        async with monitoring.prometheus(addresses, thresholds, port=prometheus_port) as prometheus:
            # The operator's shell, written the way `make up` writes it.
            stack_json = [
                {"name": n, "url": f"http://127.0.0.1:{p}", "ready_path": "/readyz", "log": str(logs / f"{n}.log")}
                for n, p in ports.items()
            ]
            stack_json.append(
                {
                    "name": "catcher",
                    "url": f"http://127.0.0.1:{catcher_port}",
                    "ready_path": "/",
                    "log": str(logs / "catcher.log"),
                }
            )
            stack_json.append(
                {
                    "name": "prometheus",
                    "url": prometheus.url,
                    "ready_path": "/-/ready",
                    "log": str(prometheus.folder / "prometheus.log"),
                }
            )
            # The broker's super-user password where `make up` keeps it (the dead-letter commands use it).
            (home / "var" / "kafka").mkdir(parents=True)
            (home / "var" / "kafka" / "admin-password").write_text(default_credentials().password)
            _load_stack().write_operator_env(
                home,
                kafka_bootstrap,
                stack_json,
                {
                    "DISTRETTO_TOPIC_PREFIX": prefix,
                    "DISTRETTO_PROMETHEUS_URL": prometheus.url,
                    "DISTRETTO_GATEWAY_URL": gateway,
                },
            )
            # The session's broker log, where `make up` keeps the broker's (when this run started it).
            broker_logs = sorted(tmp_path_factory.getbasetemp().glob("kafka*/kafka/server.log"))
            if broker_logs:
                (home / "var" / "kafka" / "server.log").symlink_to(broker_logs[0])
            yield Platform(
                gateway, f"http://127.0.0.1:{ports['console']}", kafka_bootstrap, prefix, prometheus, home, ports
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


AXE = Axe()


async def accessible(page: Page, name: str, shot: str | None = None) -> None:
    """axe-core on the page as it is now: no serious or critical violation; a screenshot when asked."""
    violations = (await AXE.run(page)).response["violations"]
    blocking = [
        f"{v['id']} ({v['impact']}): {v['help']} — {v['nodes'][0]['target']}"
        for v in violations
        if v["impact"] in {"serious", "critical"}
    ]
    assert not blocking, f"{name}: " + "; ".join(blocking)
    if SHOTS and shot:
        folder = ROOT / SHOTS
        folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(folder / f"{shot}.png"), full_page=True)


def shell(
    platform: Platform, command: str, *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``command`` in a fresh shell: nothing of this process's environment, only var/env.sh sourced."""
    env_sh = platform.home / "var" / "env.sh"
    script = f"source {shlex.quote(str(env_sh))} && {command}"
    done = subprocess.run(
        ["env", "-i", f"HOME={Path.home()}", "PATH=/usr/bin:/bin", "COLUMNS=400", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.timeout(900)  # a bound under load (the story waits on alerts and consumers), not a measure
async def test_every_target_up_poison_alert_dead_letter_replayed_to_the_failed_group_and_resolved(
    platform: Platform, browser: Browser
) -> None:
    # 1. Prometheus sees every process of the platform up.
    async def all_up() -> dict[str, str]:
        active = (await platform.prometheus.api("targets"))["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return health if set(health) == set(SERVICES) and set(health.values()) == {"up"} else {}

    await wait_for(all_up, timeout=120, what="every Prometheus target up")
    assert "ready" in shell(platform, "distretto status").stdout

    # 2. One poison record, with kcat, on a topic three consumer groups read.
    topic = platform.poison_topic
    assert await platform.prometheus.firing("DeadLetters") == []
    # as the broker's super user (SASL/SCRAM, the test session's credentials): it may write any topic
    admin = default_credentials()
    sent = kcat(
        platform.bootstrap,
        admin.username,
        admin.password,
        "-P",
        "-t",
        topic,
        "-k",
        "poison-1",
        input="this is not an event\n",
    )
    assert sent.returncode == 0, sent.stderr

    # 3. The alert fires, read back from Prometheus' API.
    async def fired() -> list[dict[str, Any]]:
        return [a for a in await platform.prometheus.firing("DeadLetters") if a["labels"].get("topic") == topic]

    alerts = await wait_for(fired, timeout=120, what="DeadLetters firing")
    groups_alerted = {a["labels"]["consumer"] for a in alerts}

    async def letters(min_count: int) -> list[DeadLetter]:
        found = await list_dead_letters(platform.bootstrap, topic)
        return found if len(found) >= min_count else []

    # every group that read it dead-lettered it on its own (the alert names at least one of them)
    entries = await wait_for(lambda: letters(3), timeout=120, what="one dead letter per consuming group")
    groups = {d.consumer for d in entries}
    assert len(groups) == len(entries) >= 3 and {e.kind for e in entries} == {"invalid"}
    assert groups_alerted <= {g.split(".", 1)[1] for g in groups} | groups

    # 4. The operator opens the console's operations page.
    page = await (
        await browser.new_context(base_url=platform.gateway, locale="en-GB")
    ).new_page()  # the console, via the gateway
    page.set_default_timeout(30_000)
    await page.goto("/login")
    await page.get_by_label("Email").fill(OPERATOR["email"])
    await page.get_by_label("Password").fill(OPERATOR["password"])
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible(timeout=LONG)
    await page.get_by_role("link", name="Operations").click()
    await expect(page.get_by_role("heading", name="Operations", exact=True)).to_be_visible(timeout=LONG)
    await expect(page.get_by_test_id("alerts")).to_contain_text("DeadLetters", timeout=LONG)
    services = page.get_by_test_id("services")
    for name in SERVICES:
        await expect(services.locator("tr", has=page.get_by_role("cell", name=name, exact=True))).to_contain_text("up")
    for panel in monitoring.console_panels():  # the charts, drawn by the page's own Chart.js
        await expect(page.get_by_test_id(f"chart-{panel.key}").locator("canvas")).to_be_visible()
    await expect(page.get_by_test_id("chart-http_rate").locator("details")).to_contain_text("gateway")
    table = page.get_by_test_id("dead-letters")
    rows = table.locator("tr", has_text=topic + ".dlq")
    await expect(rows).to_have_count(len(entries))
    await expect(rows.first).to_contain_text("invalid")
    await accessible(page, "operations", "operations")

    # 5. Replay one to the group that failed; the entry is resolved.
    target = sorted(entries, key=lambda d: d.offset)[0]
    row = table.locator(f'tr[data-offset="{target.offset}"]', has_text=topic + ".dlq")
    await row.locator("details summary").click()
    await expect(row).to_contain_text("ce_" if target.headers else "not an event")
    await accessible(page, "operations: a dead letter opened", "operations-dead-letter")
    await row.get_by_role("button", name=f"Replay to {target.consumer}").click()
    row = table.locator(f'tr[data-offset="{target.offset}"]', has_text=topic + ".dlq")
    await expect(row).to_have_attribute("data-status", REPLAYED, timeout=LONG)
    await expect(row.get_by_role("button")).to_have_count(0)  # a resolved entry has no action left

    # The replay went to that group only; the record fails there again: one new entry, for it alone.
    replayed = [r for r in await read_topic(platform.bootstrap, topic, min_count=2) if REPLAY_FOR in headers_of(r)]
    assert [headers_of(r)[REPLAY_FOR] for r in replayed] == [target.consumer]
    after = await wait_for(lambda: letters(len(entries) + 1), timeout=120, what="the replay failing again")
    new = [d for d in after if d.offset not in {e.offset for e in entries}]
    assert [d.consumer for d in new] == [target.consumer] and len(after) == len(entries) + 1

    # 6. The others are discarded, each with the reason recorded.
    for entry in [e for e in entries if e.offset != target.offset] + new:
        row = table.locator(f'tr[data-offset="{entry.offset}"]', has_text=topic + ".dlq")
        await row.get_by_label("Reason").fill("a test record, not an event")
        await row.get_by_role("button", name="Discard").click()
        row = table.locator(f'tr[data-offset="{entry.offset}"]', has_text=topic + ".dlq")
        await expect(row).to_have_attribute("data-status", DISCARDED, timeout=LONG)
        await expect(row).to_contain_text("a test record, not an event")
    states = {d.offset: d.status for d in await list_dead_letters(platform.bootstrap, topic)}
    assert states[target.offset] == REPLAYED and PENDING not in states.values()
    await accessible(page, "operations: every dead letter resolved", "operations-resolved")

    listed = shell(platform, f"distretto dlq list {shlex.quote(topic)}").stdout
    assert "replayed" in listed and "discarded" in listed and "pending" not in listed


@pytest.mark.timeout(900)
async def test_the_command_line_in_a_fresh_shell(platform: Platform, tmp_path: Path) -> None:
    found = shell(platform, "command -v distretto uv").stdout.split()
    assert found[0] == str(platform.home / "var" / "bin" / "distretto") and found[1].endswith("/uv")

    status = shell(platform, "distretto status").stdout
    for name in SERVICES:
        assert re.search(rf"{name}\s+\S\s+ready", status), status
    assert "not ready" not in status and "down" not in status.split("Consumer lag")[0]
    assert "Alerts" in status

    # logs: the last lines, pretty; --follow prints what comes next.
    assert "request" in shell(platform, "distretto logs gateway -n 20").stdout
    env_sh = platform.home / "var" / "env.sh"
    follow = await asyncio.create_subprocess_exec(
        *("env", "-i", f"HOME={Path.home()}", "PATH=/usr/bin:/bin", "COLUMNS=400", "bash", "-c"),
        f"source {shlex.quote(str(env_sh))} && exec distretto logs membership --follow -n 0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert follow.stdout is not None
        marker = f"/organisations/{uuid.uuid4()}"  # not in the log: the route template is; the 401 is
        seen: list[str] = []

        async def followed() -> bool:
            async with httpx.AsyncClient() as client:  # refused (no identity): one access line all the same
                await client.get(f"http://127.0.0.1:{platform.ports['membership']}{marker}")
            try:
                while True:
                    line = await asyncio.wait_for(follow.stdout.readline(), timeout=1)  # type: ignore[union-attr]
                    if not line:
                        return False
                    seen.append(line.decode())
            except TimeoutError:
                pass
            return any("request" in line and "401" in line for line in seen)

        await wait_for(followed, timeout=60, interval=0.2, what="logs --follow printing a new request")
        line = next(line for line in seen if "request" in line and "401" in line)
        assert not line.lstrip().startswith("{") and "route=" in line  # pretty-printed, not the raw JSON
        assert marker not in "".join(seen)  # no path values in the access log
    finally:
        follow.terminate()
        await follow.wait()

    # imports through the gateway, with a progress bar; a bad file imports nothing and says why.
    good = tmp_path / "members.csv"
    good.write_text("name,kind,sectors,province\nAlfa Cell S.r.l.,company,biotech,SI\nBeta Lab,company,pharma,FI\n")
    login = f"DISTRETTO_PASSWORD={shlex.quote(ADMIN['password'])} "
    imported = shell(platform, login + f"distretto import members {good} --email {ADMIN['email']}")
    assert "imported 2 organisation(s): 2 created" in imported.stdout
    assert "members.csv: done (201)" in imported.stdout and "━" in imported.stdout  # the progress bar, finished
    bad = tmp_path / "bad.csv"
    bad.write_text("name,kind,sectors\nGamma,company,astrology\n")
    refused = shell(platform, login + f"distretto import members {bad} --email {ADMIN['email']}", check=False)
    assert refused.returncode == 2 and "nothing imported" in refused.stderr and "line 2: sectors" in refused.stderr
    wrong = shell(
        platform,
        f"DISTRETTO_PASSWORD=wrong-password distretto import members {good} --email {ADMIN['email']}",
        check=False,
    )
    assert wrong.returncode == 2 and "login refused (401)" in wrong.stderr
    missing = shell(platform, login + f"distretto import members {tmp_path / 'nope.csv'} --email x@y", check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=60) as client:
        token = (await client.post("/auth/token", json=ADMIN)).json()["access_token"]
    cordis = shell(  # with a token instead of a login
        platform,
        f"DISTRETTO_TOKEN={token} distretto import cordis {CORDIS / 'project.csv'} {CORDIS / 'organization.csv'}",
    )
    assert re.search(r"projects: [1-9]\d* created", cordis.stdout), cordis.stdout
    nobody = shell(platform, f"distretto import cordis {CORDIS / 'project.csv'}", check=False)
    assert nobody.returncode == 2 and "say who imports" in nobody.stderr
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=60) as client:
        listed = await client.get(
            "/api/membership/organisations", params={"q": "Alfa Cell"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert "Alfa Cell S.r.l." in listed.text

    # kafka start|status|stop: a broker of its own (its own folder and ports), as `make up`'s would be.
    kafka_home = tmp_path / "kafka-home"
    own = (
        f"DISTRETTO_HOME={kafka_home} KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{free_port()} "
        f"DISTRETTO_KAFKA_CONTROLLER_PORT={free_port()} "
    )
    try:
        assert shell(platform, own + "distretto kafka status", check=False).returncode == 1  # not running yet
        started = shell(platform, own + "distretto kafka start --timeout 400", timeout=420)  # bounds under load
        assert "started" in started.stdout + started.stderr
        running = shell(platform, own + "distretto kafka status")
        assert "running" in running.stdout + running.stderr
    finally:
        shell(platform, own + "distretto kafka stop", check=False)
    assert shell(platform, own + "distretto kafka status", check=False).returncode == 1


ROW = r"{name}\s+[│|]\s+\S+\s+[│|]\s+[1-9]\d*\s+[│|]\s+0\s"
"""A row of `distretto logs --check`: the process, its file, how many lines (some), how many not JSON (none)."""


async def test_no_line_of_any_log_is_not_json(platform: Platform) -> None:
    # After the story and the command line above: every process's log, Prometheus' and the broker's.
    checked = shell(platform, "distretto logs --check")
    for name in (*SERVICES, "catcher", "prometheus"):
        assert re.search(ROW.format(name=name), checked.stdout), (name, checked.stdout)
    if (platform.home / "var" / "kafka" / "server.log").exists():
        assert re.search(ROW.format(name="kafka"), checked.stdout), checked.stdout
    # and the check does catch a line that is not JSON
    with (platform.home / "var" / "log" / "catcher.log").open("a") as log:
        log.write("Traceback (most recent call last):\n")
    caught = shell(platform, "distretto logs --check", check=False)
    assert caught.returncode == 1 and "Traceback (most recent call last)" in caught.stderr


async def test_every_metrics_endpoint_of_the_platform_passes_promtool(platform: Platform) -> None:
    # The console's too (tests/platform/test_e2e.py checks the services of its own platform).
    async with httpx.AsyncClient(timeout=20) as client:
        for name, port in platform.ports.items():
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert "distretto_http_requests_total" in text, name
            done = subprocess.run(
                [monitoring.PROMTOOL_BIN, "check", "metrics"], input=text, capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
