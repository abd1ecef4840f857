"""schemathesis, with every check, against each service and the gateway running as real processes.

Bounded by the work, not the clock. In `make test`: 5 examples per operation, every phase
(examples, coverage, fuzzing, stateful), derandomised generation (the same cases every run) — about
1,400-2,100 cases and 20 seconds a target on an idle machine. `make schemathesis` is the thorough
run: more examples (``DISTRETTO_SCHEMATHESIS_EXAMPLES``) from a seed (``DISTRETTO_SCHEMATHESIS_SEED``,
the same cases for the same seed). Zero failures allowed: the test shows schemathesis's report when
any, and a run that tested nothing fails.

No ``--max-time``: for schemathesis it is a budget to spend, not a limit (the fuzzing and stateful
phases repeat until it is used up), so a run given one always lasts that long. A hang is caught by
the time limit on the schemathesis process instead (a run it cuts short fails).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from distretto_dev.testing import ADMIN, ServiceProcess, free_port, identity_headers, patience
from distretto_shared.identity import IDENTITY_HEADER

from .targets import TARGETS

EXAMPLES = int(os.environ.get("DISTRETTO_SCHEMATHESIS_EXAMPLES", "5"))
"""Examples per operation and phase (the coverage phase adds its own cases, a few dozen an operation)."""
SEED = os.environ.get("DISTRETTO_SCHEMATHESIS_SEED", "")
"""Unset: derandomised generation (``--generation-deterministic``). Set: that seed (other cases, the
same ones for the same seed)."""
PHASES = os.environ.get("DISTRETTO_SCHEMATHESIS_PHASES", "examples,coverage,fuzzing,stateful")
HANG_GUARD = patience(float(os.environ.get("DISTRETTO_SCHEMATHESIS_SECONDS", "120")))
"""Seconds a target's run may take before it counts as hung: ten times what it takes on an idle
machine by default (stretched by ``DISTRETTO_TEST_PATIENCE``); a slow machine runs the same cases, later."""
CONFIG = Path(__file__).with_name("schemathesis.toml")
"""The one relaxation (positive data may get a 422 where a rule is beyond JSON Schema), operation by operation."""


def schemathesis_command(url: str, credential: str, report: Path) -> list[str]:
    """The schemathesis command line for the target whose OpenAPI document is at ``url``."""
    generation = ["--seed", SEED] if SEED else ["--generation-deterministic"]
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        url,
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        *generation,
        "--workers",
        "1",
        "--phases",
        PHASES,
        # Readiness answers the state of the database and the broker, not the request: a 503 there
        # is its purpose (a broker reconnecting under load once made one), tested by the backbone suite.
        "--exclude-path",
        "/readyz",
        "--request-timeout",
        "30",
        "--header",
        credential,
        "--output-truncate",
        "true",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]


def _environment(name: str, root: Path, bootstrap: str) -> dict[str, str]:
    prefix = name.upper()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DISTRETTO_TOPIC_PREFIX": f"st{secrets.token_hex(4)}.",
        f"{prefix}_DATABASE_URL": f"sqlite+aiosqlite:///{root / (name + '.db')}",
        f"{prefix}_LOG_LEVEL": "WARNING",
    }
    if name == "newsletter":
        # configured, as `make up` does (a Standard Webhooks secret)
        env["NEWSLETTER_BOUNCE_WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    if name == "gateway":
        env |= {
            "GATEWAY_ADMIN_EMAIL": "admin@schemathesis.example",
            "GATEWAY_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "GATEWAY_ARGON2_TIME_COST": "1",
            "GATEWAY_ARGON2_MEMORY_KIB": "1024",
            "GATEWAY_ARGON2_PARALLELISM": "1",
            "GATEWAY_LOGIN_RATE_LIMIT_BURST": "100000",
            "GATEWAY_RATE_LIMIT_BURST": "100000",
            "GATEWAY_ANONYMOUS_RATE_LIMIT_BURST": "100000",
            # its own readiness (its database): no service runs behind it here, so with the
            # services counted /readyz would rightly answer 503 to every case
            "GATEWAY_READYZ_REQUIRES_UPSTREAMS": "false",
        }
        # no service behind it: its own routes are the target (the services are targets of their own)
        for upstream in ("membership", "projects", "newsletter", "matchmaking", "partners", "console"):
            env[f"GATEWAY_{upstream.upper()}_URL"] = f"http://127.0.0.1:{free_port()}"
    return env


async def _credential(process: ServiceProcess, env: dict[str, str]) -> str:
    if process.name != "gateway":
        return f"{IDENTITY_HEADER}: {identity_headers(ADMIN, process.name, ttl=3600)[IDENTITY_HEADER]}"
    async with httpx.AsyncClient(base_url=process.url, timeout=30) as client:
        login = {"email": env["GATEWAY_ADMIN_EMAIL"], "password": env["GATEWAY_ADMIN_PASSWORD"]}
        response = await client.post("/auth/token", json=login)
        assert response.status_code == 200, response.text
        return f"Authorization: Bearer {response.json()['access_token']}"


@pytest.mark.timeout(HANG_GUARD + 240)  # beyond the run's own guard (the suite's default is 300 s)
@pytest.mark.parametrize("name", TARGETS)
async def test_schemathesis_finds_nothing(name: str, tmp_path: Path, kafka_bootstrap: str) -> None:
    env = _environment(name, tmp_path, kafka_bootstrap)
    process = ServiceProcess(name, env=env, log_path=tmp_path / f"{name}.log")
    await process.start()
    try:
        credential = await _credential(process, env)
        command = schemathesis_command(f"{process.url}/openapi.json", credential, tmp_path / "report.json")
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD, check=False, cwd=tmp_path)
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"")[-3000:]
            pytest.fail(f"schemathesis against {name} did not finish within {HANG_GUARD:.0f} s:\n{output!r}")
    finally:
        process.stop()
    report = run.stdout + run.stderr[-3000:]
    assert run.returncode == 0, f"schemathesis against {name}:\n{report}"
    problems = report_problems(json.loads((tmp_path / "report.json").read_text()))
    assert not problems, f"schemathesis against {name}: {problems}\n{report}"


def report_problems(summary: dict[str, Any]) -> list[str]:
    """What is wrong with a run, from schemathesis's JSON report: a finding, an error, or work not
    done (cut by the hang guard, an operation not tested, no case generated)."""
    operations, cases = summary["operations"], summary["test_cases"]
    problems = [f"{f['code']} {f['title']} ({f['count']}): {', '.join(f['operations'])}" for f in summary["failures"]]
    problems += [f"error: {e['title']} ({e['count']})" for e in summary["errors"]]
    if not summary["complete"] or summary["stop_reason"] != "completed":
        problems.append(f"the run did not complete: {summary['stop_reason']}")
    if operations["selected"] == 0 or operations["tested"] < operations["selected"]:
        problems.append(f"operations tested: {operations['tested']} of {operations['selected']}")
    if cases["generated"] < operations["selected"]:
        problems.append(f"test cases generated: {cases['generated']}")
    return problems


def test_a_run_that_tested_nothing_or_was_cut_short_fails() -> None:
    """The judge of a run: a clean, complete report passes; nothing tested, a run stopped by the hang
    guard, an untested operation or a finding each fail."""
    clean: dict[str, Any] = {
        "complete": True,
        "stop_reason": "completed",
        "operations": {"selected": 3, "tested": 3},
        "test_cases": {"generated": 40},
        "failures": [],
        "errors": [],
    }
    assert report_problems(clean) == []
    nothing = clean | {"operations": {"selected": 0, "tested": 0}, "test_cases": {"generated": 0}}
    cut = clean | {"stop_reason": "max_time"}
    untested = clean | {"operations": {"selected": 3, "tested": 2}}
    found = clean | {"failures": [{"code": "ST101", "title": "Server error", "count": 1, "operations": ["GET /x"]}]}
    errored = clean | {"errors": [{"title": "Schema Loading Error", "count": 1}]}
    for bad in (nothing, cut, untested, found, errored):
        assert report_problems(bad), bad


def test_the_run_is_bounded_by_its_cases_and_the_same_every_time() -> None:
    """No time budget (schemathesis would spend all of it), a fixed number of examples, every check,
    and derandomised generation unless a seed is asked for."""
    command = schemathesis_command("http://127.0.0.1:1/openapi.json", "X-A: b", Path("report.json"))
    assert "--max-time" not in command
    assert command[command.index("--max-examples") + 1] == str(EXAMPLES)
    assert command[command.index("--checks") + 1] == "all"
    assert ("--generation-deterministic" in command) != ("--seed" in command)
