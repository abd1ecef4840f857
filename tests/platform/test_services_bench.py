"""The request-path benchmark (bench/services/run.py) runs end to end at a tiny size.

It starts every service as a real process beside the bare yardstick on the same database, drives
both, and reports a row per service, scenario and client count. What is checked is that every row
is there, with requests answered and positive figures on both sides — never how fast they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distretto_dev.testing import POSTGRES_ENV, patience

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("membership", "projects", "newsletter", "matchmaking")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_row_is_measured(backend: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    if backend == "postgres" and not os.environ.get(POSTGRES_ENV):
        if os.environ.get("DISTRETTO_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{POSTGRES_ENV} is not set but DISTRETTO_REQUIRE_POSTGRES=1")
        pytest.skip(f"PostgreSQL variant needs {POSTGRES_ENV}")
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "services" / "run.py"),
            "--backends",
            backend,
            # one client count above 1 (the concurrent path); the 1-client row is the same code
            "--clients",
            "2",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--seed",
            "3",
            "--json",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=patience(120),
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(report["results"]) == set(SERVICES)
    for service in SERVICES:
        rows = report["results"][service][backend]
        assert set(rows) == {"read c=2", "write c=2"}, service
        for key, row in rows.items():
            for side in ("service", "bare"):
                figures = row[side]
                where = f"{service} {backend} {key} {side}"
                assert figures["errors"] == 0, (where, figures)
                assert figures["requests"] > 0, where
                assert figures["rps"] > 0, where
                assert 0 < figures["p50_ms"] <= figures["p99_ms"], where
                assert figures["server_cpu_us_per_request"] > 0, where
            assert row["ratio"] > 0
    assert f"{SERVICES[0]:<11} {backend:<8} read c=2" in out.stdout  # the printed table has the rows too
