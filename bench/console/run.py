"""Console benchmark: each page's response time through the gateway, on the demo data.

    uv run python bench/console/run.py [--requests 20] [--json out.json]

Starts what ``make up`` starts, on free ports (a throwaway Kafka unless KAFKA_BOOTSTRAP_SERVERS
is set; the mail catcher; the four services, the gateway and the console, SQLite under a
temporary folder), loads each service's demo data through the gateway as ``make up`` does, logs
in to the console as the admin, then asks for every page ``--requests`` times in turn (after two
warm-up rounds) and prints the median and the 90th percentile per page. Everything runs on this
machine, so the figures include the gateway hop and the console's calls back through it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "shared" / "src"))

from distretto_dev.kafka_runner import session_broker
from distretto_shared.identity import Keyring

SERVICES = ("membership", "projects", "newsletter", "matchmaking", "gateway", "console")
ADMIN = {"email": "admin@bench.example", "password": "bench-admin-password"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"bench: {url} not ready after {timeout:.0f}s (a loaded machine: try --ready-timeout)")


def start(
    root: Path, bootstrap: str, ready_timeout: float = 180
) -> tuple[dict[str, str], list[subprocess.Popen[bytes]]]:
    ports = {name: free_port() for name in SERVICES}
    smtp, catcher_http = free_port(), free_port()
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    keys = Keyring.generate(SERVICES)
    common = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DISTRETTO_DATA_DIR": str(root / "data"), "LOG_LEVEL": "WARNING"}
    env = {
        "membership": {},
        "projects": {},
        "newsletter": {
            "NEWSLETTER_SECRET_KEY": secrets.token_urlsafe(32),  # no default secret: one per run
            "NEWSLETTER_SMTP_SERVERS": f"127.0.0.1:{smtp}",
            "NEWSLETTER_MEMBERSHIP_URL": f"http://127.0.0.1:{ports['membership']}",
            "NEWSLETTER_LINK_BASE_URL": gateway + "/api/newsletter",
        },
        "matchmaking": {},
        "gateway": {
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            # the partners service is not started here: the gateway is ready with its own database
            "GATEWAY_READYZ_REQUIRES_UPSTREAMS": "false",
            "GATEWAY_RATE_LIMIT_PER_MINUTE": "100000",
            "GATEWAY_RATE_LIMIT_BURST": "10000",
            "GATEWAY_ANONYMOUS_RATE_LIMIT_PER_MINUTE": "100000",
            "GATEWAY_ANONYMOUS_RATE_LIMIT_BURST": "10000",
            **{f"GATEWAY_{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items() if n != "gateway"},
        },
        "console": {"CONSOLE_GATEWAY_URL": gateway},
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "distretto_dev.catcher", "--smtp-port", str(smtp), "--http-port", str(catcher_http)],
            env={**os.environ, **common},
            stdout=(root / "catcher.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        for name in SERVICES:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", name, "serve", "--port", str(ports[name])],
                    env={**os.environ, **common, **env[name], **keys.env(name)},
                    stdout=(root / f"{name}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
            if name == "membership":
                wait_ready(f"http://127.0.0.1:{ports[name]}", ready_timeout)
        for name in SERVICES:
            wait_ready(f"http://127.0.0.1:{ports[name]}", ready_timeout)
    except BaseException:
        stop(procs)  # nothing left running when the platform does not come up
        raise
    return {"gateway": gateway}, procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def load_demo(gateway: str) -> None:
    token = httpx.post(gateway + "/auth/token", json=ADMIN, timeout=10).json()["access_token"]
    for name in ("membership", "projects", "matchmaking", "newsletter"):
        argv = [sys.executable, "-m", f"{name}.demo", "--base-url", f"{gateway}/api/{name}", "--token", token]
        if subprocess.call(argv, cwd=ROOT, stdout=subprocess.DEVNULL) != 0:
            raise SystemExit(f"bench: {name} demo loader failed")


def first_id(client: httpx.Client, path: str, token: str) -> str | None:
    items = client.get(path, params={"limit": 1}, headers={"Authorization": f"Bearer {token}"}).json().get("items")
    return items[0]["id"] if items else None


def pages(client: httpx.Client, gateway: str) -> list[str]:
    token = httpx.post(gateway + "/auth/token", json=ADMIN, timeout=10).json()["access_token"]
    found = ["/", "/members", "/projects", "/newsletter", "/newsletter/subscribers", "/matchmaking", "/admin"]
    # sorted by the service across the whole register, the subscriber search, the new-campaign form
    found += [
        "/members?sort=province&dir=desc&offset=25",
        "/newsletter/subscribers?q=example",
        "/newsletter/campaigns/new",
    ]
    for page, api in (
        ("/members/{}", "/api/membership/organisations"),
        ("/projects/{}", "/api/projects/projects"),
        ("/newsletter/campaigns/{}", "/api/newsletter/campaigns"),
        ("/newsletter/templates/{}", "/api/newsletter/templates"),
        ("/matchmaking/opportunities/{}", "/api/matchmaking/opportunities"),
    ):
        some = first_id(client, api, token)
        if some:
            found.append(page.format(some))
    return [*found, "/public", "/public/newsletter"]


def login(client: httpx.Client) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, "no CSRF token on the login page"
    answer = client.post("/login", data={**ADMIN, "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text[:300]


def measure(client: httpx.Client, paths: list[str], rounds: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {p: [] for p in paths}
    failed: dict[str, list[int]] = {p: [] for p in paths}
    for round_ in range(rounds + 2):
        for path in paths:
            started = time.perf_counter()
            answer = client.get(path)
            elapsed = time.perf_counter() - started
            if answer.status_code != 200:
                failed[path].append(answer.status_code)  # reported beside the figures, never timed
            elif round_ >= 2:  # two warm-up rounds
                times[path].append(elapsed * 1000)
    return {
        p: {
            "median_ms": statistics.median(t) if t else float("nan"),
            "p90_ms": (statistics.quantiles(t, n=10)[-1] if len(t) >= 10 else max(t)) if t else float("nan"),
            "n": len(t),
            "not_200": failed[p],
        }
        for p, t in times.items()
    }


SHOTS = {
    "/": "home",
    "/members": "members",
    "/projects": "projects",
    "/newsletter": "newsletter",
    "/matchmaking": "matchmaking",
    "/admin": "admin",
    "/public": "public-figures",
}


def screenshots(gateway: str, paths: list[str], folder: Path) -> None:
    """The main pages on the demo data, as a browser shows them (1280 px wide, full page)."""
    import asyncio

    from playwright.async_api import async_playwright

    async def take() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=os.environ.get("DISTRETTO_CHROMIUM", "/usr/bin/chromium"), args=["--no-sandbox"]
            )
            page = await (await browser.new_context(base_url=gateway, locale="en-GB")).new_page()
            await page.goto("/login")
            await page.get_by_label("Email").fill(ADMIN["email"])
            await page.get_by_label("Password").fill(ADMIN["password"])
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_url(gateway + "/")
            detail = {
                p.split("/")[1] + "-detail": p for p in paths if p.count("/") >= 2 and not p.startswith("/public")
            }
            for path, name in [*SHOTS.items(), *((p, n) for n, p in detail.items())]:
                await page.goto(path)
                await page.wait_for_load_state("load")  # not "networkidle": the live pages keep a stream open
                await page.wait_for_timeout(800)  # the charts draw after the scripts ran
                await page.screenshot(path=str(folder / f"{name}.png"), full_page=False)
            await browser.close()

    asyncio.run(take())
    print(f"bench: screenshots in {folder}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20, help="measured requests per page")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--ready-timeout", type=float, default=180, help="seconds a service may take to be ready")
    parser.add_argument("--screenshots", help="also save screenshots of the main pages (Debian's Chromium) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="distretto-bench-console-") as tmp:
        root = Path(tmp)
        with session_broker(root) as bootstrap:
            urls, procs = start(root, bootstrap, args.ready_timeout)
            try:
                print("bench: platform up; loading the demo data through the gateway", flush=True)
                load_demo(urls["gateway"])
                time.sleep(5)  # let the consumers take in the demo's events (not part of any figure)
                with httpx.Client(base_url=urls["gateway"], timeout=30, headers={"Accept-Language": "it"}) as client:
                    paths = pages(client, urls["gateway"])
                    login(client)
                    results = measure(client, paths, args.requests)
                if args.screenshots:
                    screenshots(urls["gateway"], paths, Path(args.screenshots))
            finally:
                stop(procs)
    width = max(len(p) for p in results)
    print(f"\n{'page'.ljust(width)}  median ms   p90 ms   n  not 200")
    for path, r in results.items():
        bad = ",".join(str(c) for c in r["not_200"]) or "-"
        print(f"{path.ljust(width)}  {r['median_ms']:9.1f}  {r['p90_ms']:7.1f}  {r['n']:2d}  {bad}")
    slow = [p for p, r in results.items() if r["median_ms"] >= 300]
    print(f"\npages with a median of 300 ms or more: {', '.join(slow) if slow else 'none'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
