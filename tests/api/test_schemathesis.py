"""schemathesis, with every check, against each service and the gateway running as real processes.

Bounded by the work, not the clock: a fixed number of examples per operation, a fixed seed (the
same cases every run) and the examples, fuzzing and stateful phases; a generous time limit only
guards against a hang (a run it cuts short fails). Zero failures allowed: the test shows
schemathesis's report when any, and a run that tested nothing fails. `make schemathesis`; not part
of `make test` (docs/api-conventions.md says why).
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

from distretto_dev.testing import ADMIN, ServiceProcess, free_port, identity_headers
from distretto_shared.identity import IDENTITY_HEADER

from .targets import TARGETS

MAX_EXAMPLES = int(os.environ.get("DISTRETTO_SCHEMATHESIS_EXAMPLES", "5"))
MAX_SECONDS = int(os.environ.get("DISTRETTO_SCHEMATHESIS_SECONDS", "1800"))
"""A guard against a hang, not the bound on the work (that is the examples and the phases): a slow
machine runs the same cases, only later."""
PHASES = os.environ.get("DISTRETTO_SCHEMATHESIS_PHASES", "examples,coverage,fuzzing,stateful")
"""Every phase by default; a shorter run names fewer (the stateful phase, sequences of calls linked
by their ids, is most of the cases: over 17,000 for matchmaking)."""
SEED = 20261204
CONFIG = Path(__file__).with_name("schemathesis.toml")
"""The one relaxation (positive data may get a 422 where a rule is beyond JSON Schema), operation by operation."""


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


@pytest.mark.timeout(MAX_SECONDS + 240)  # beyond the run's own guard (the suite's default is 300 s)
@pytest.mark.parametrize("name", TARGETS)
async def test_schemathesis_finds_nothing(name: str, tmp_path: Path, kafka_bootstrap: str) -> None:
    env = _environment(name, tmp_path, kafka_bootstrap)
    process = ServiceProcess(name, env=env, log_path=tmp_path / f"{name}.log")
    await process.start()
    try:
        credential = await _credential(process, env)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(CONFIG),
                "run",
                f"{process.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",
                "1",
                "--phases",
                PHASES,
                "--max-time",
                str(MAX_SECONDS),
                "--request-timeout",
                "30",
                "--header",
                credential,
                "--output-truncate",
                "true",
                "--report",
                "json",
                "--report-json-path",
                str(tmp_path / "report.json"),
            ],
            capture_output=True,
            text=True,
            timeout=MAX_SECONDS + 120,
            check=False,
            cwd=tmp_path,
        )
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
