"""The backbone benchmark, run end to end at a tiny size: it must print the three-way table.

No figure is judged (the machine's speed is not the code's): the test checks that each of the
three pipelines — Distretto, the lean baseline, raw aiokafka — moved every event and got a
positive throughput at 1 and 100 events per transaction and a latency at the fixed rate, on the
database under test, and that the run left no child process behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distretto_dev.testing import DatabaseTarget, patience

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "backbone" / "run.py"

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(int(patience(360)))]


def left_in_session(sid: int) -> list[str]:
    """Command lines of the live processes of session ``sid`` (a run's children stay in its session)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
        if int(session) == sid and state != "Z":
            found.append(cmd)
    return found


def test_backbone_bench_prints_the_three_way_table(database: DatabaseTarget, kafka_bootstrap: str) -> None:
    args = [
        sys.executable,
        str(RUN),
        "--backends",
        database.backend,
        "--tput-seconds",
        "0.5",
        "--rate",
        "100",
        "--seconds",
        "1",
        "--json",
    ]
    if database.backend == "postgresql":
        args += ["--postgres-url", database.url]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=patience(300))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    # Every child process of the run ends with it (the last ones may take a moment to exit).
    deadline = time.monotonic() + patience(10)
    while left_in_session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left_in_session(proc.pid) == []

    doc = json.loads(out)
    figures = doc["figures"][database.backend]
    assert set(figures) == {"distretto", "lean", "raw", "distretto_over_lean"}
    for pipeline in ("distretto", "lean", "raw"):
        for measure in ("tput_1", "tput_100", "p50_ms", "p99_ms"):
            value = figures[pipeline][measure]
            assert value is not None and value > 0, (pipeline, measure, err[-3000:])
        assert figures[pipeline]["p50_ms"] <= figures[pipeline]["p99_ms"]
    for measure, value in figures["distretto_over_lean"].items():
        assert value is not None and value > 0, measure
    # Every latency run measured every event it wrote, and each database pipeline's consumer wrote
    # exactly one effect per event (the 50 warm-up events included): none lost, none twice.
    for run in doc["runs"]:
        if run["mode"] == "latency":
            assert run["measured"] == run["events"] == 100, run
            assert run["rate_reached"] > 0, run
        else:
            assert run["events"] > 0 and run["events_per_s"] > 0, run
        if run["pipeline"] != "raw":
            assert run["effect_rows"] == run["distinct_effects"] == run["events"] + 50, run

    # The printed table: one section for the database, a row per pipeline, and the ratios.
    title = {"sqlite": "SQLite:", "postgresql": "PostgreSQL:"}[database.backend]
    section = err[err.index(f"\n{title}") :]
    lines = section.splitlines()
    for label in ("Distretto ", "lean same-architecture", "raw aiokafka", "Distretto / lean"):
        row = next(line for line in lines if line.startswith(label))
        cells = row[len(label) :].split()
        numbers = [float(c.replace(",", "")) for c in cells if c != "ms"]
        # 1 and 100 ev/tx, p50, p99 (and the rate the producer reached, except in the ratio row)
        assert len(numbers) == (4 if label == "Distretto / lean" else 5), row
        assert all(x > 0 for x in numbers), row
