"""`make test`: every test suite in one pytest run, against one real Kafka.

Each service keeps its tables on its own SQLModel metadata (``distretto_shared.tables``), so
the services' models load side by side and one process runs the backbone's tests, every
service's and the platform's cross-service tests (which start the services as real
processes). One throwaway broker serves them all (or KAFKA_BOOTSTRAP_SERVERS, when given).
pytest-xdist spreads the modules over ``DISTRETTO_TEST_WORKERS`` processes (2 by default; 1 runs
everything in one process): most of a test's time is spent waiting on real processes, the broker
and the database, so two workers share two cores well. A module stays on one worker (``--dist
loadfile``: its stack of processes starts once; a session-wide stack, such as the security
suite's platform, starts once per worker that runs one of its modules).
Which file a free worker takes next: the longest first, from ``deploy/test-durations.json``
(``distretto_dev.xdist_schedule``); ``--record-durations`` rewrites that file from this run (every
test passed). The end of the output lists the 15 slowest tests and the 15 slowest files, then the
time and the counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = [
    "tests/backbone",
    "services/membership",
    "services/projects",
    "services/newsletter",
    "services/matchmaking",
    "services/partners",
    "services/gateway",
    "services/console",
    "tests/api",
    "tests/platform",
    "tests/security",
    "tests/bench",
]


DURATIONS = ROOT / "deploy" / "test-durations.json"


def scratch_folder() -> str | None:
    """Where the session's files go: a memory file system (``/dev/shm``) where there is one.

    Every SQLite database of the tests (each test's own, every real process's) and the broker's log
    live there. On a disk each SQLite commit and each DDL statement of a migration waits for an
    fsync (a service's migrations on a fresh SQLite file: 1.0-2.6 s on the build machine's disk,
    0.1-0.7 s in memory); what the tests check of a crash (SIGKILL of a process) does not depend on
    it: the page cache survives a process. ``TMPDIR``, when set, is kept.
    """
    if os.environ.get("TMPDIR"):
        return None
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def file_seconds(junit: Path) -> tuple[dict[str, float], int]:
    """Seconds (setup, call and teardown) per test file in a JUnit XML report, and its number of tests."""
    seconds: dict[str, float] = defaultdict(float)
    tests = 0
    for case in ET.parse(junit).iter("testcase"):
        # classname: the file's path as a dotted module, then the class if any (capitalised)
        if not case.get("classname"):
            continue  # a report of the session itself (an interrupted run), no file's
        parts = case.get("classname", "").split(".")
        while parts and parts[-1][:1].isupper():
            parts.pop()
        path = "/".join(parts) + ".py"
        seconds[path] += float(case.get("time") or 0)
        tests += 1
    return dict(seconds), tests


def main() -> int:
    sys.path.insert(0, str(ROOT / "dev" / "src"))
    from distretto_dev.kafka_runner import session_broker

    extra = sys.argv[1:]
    record = "--record-durations" in extra
    extra = [a for a in extra if a != "--record-durations"]
    suites = [s for s in SUITES if (ROOT / s).exists()]
    started = time.monotonic()
    scratch = scratch_folder()
    with (
        tempfile.TemporaryDirectory(prefix="distretto-test-", dir=scratch) as tmp,
        session_broker(Path(tmp)) as bootstrap,
    ):
        junit = Path(tmp) / "junit.xml"
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DISTRETTO_TEST_DURATIONS": str(DURATIONS)}
        if scratch:
            # pytest's temporary folders (tmp_path; the last three sessions are kept, as by default) there too
            env["TMPDIR"] = scratch
        print(f"run_tests: Kafka at {bootstrap}; suites: {', '.join(suites)}", flush=True)
        workers = os.environ.get("DISTRETTO_TEST_WORKERS", "2")
        parallel = ["-n", workers, "--dist", "loadfile"] if workers not in ("0", "1") else []
        report = [f"--junitxml={junit}", "--durations=15", "-p", "distretto_dev.xdist_schedule"]
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", *suites, "-q", *parallel, *report, *extra], cwd=ROOT, env=env
        )
        if junit.exists():
            seconds, tests = file_seconds(junit)
            print("\n===== slowest 15 files (seconds of their tests, fixtures included) =====")
            for path, spent in sorted(seconds.items(), key=lambda kv: -kv[1])[:15]:
                print(f"{spent:8.1f}s {path}")
            if record and proc.returncode == 0:
                total = sum(seconds.values())
                files = {path: round(spent, 1) for path, spent in sorted(seconds.items())}
                body = {"mean_test_seconds": round(total / max(tests, 1), 2), "files": files}
                DURATIONS.write_text(json.dumps(body, indent=1) + "\n")
                print(f"run_tests: {DURATIONS.relative_to(ROOT)} recorded ({len(files)} files, {tests} tests)")
            elif record:
                print("run_tests: durations not recorded (the run failed)")
    print(f"\n===== all suites, {workers} worker(s), {time.monotonic() - started:.0f}s =====")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
