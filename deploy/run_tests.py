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
The last lines give the time and the counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
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


def main() -> int:
    sys.path.insert(0, str(ROOT / "dev" / "src"))
    from distretto_dev.kafka_runner import session_broker

    extra = sys.argv[1:]
    suites = [s for s in SUITES if (ROOT / s).exists()]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="distretto-test-") as tmp, session_broker(Path(tmp)) as bootstrap:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        print(f"run_tests: Kafka at {bootstrap}; suites: {', '.join(suites)}", flush=True)
        workers = os.environ.get("DISTRETTO_TEST_WORKERS", "2")
        parallel = ["-n", workers, "--dist", "loadfile"] if workers not in ("0", "1") else []
        proc = subprocess.run([sys.executable, "-m", "pytest", *suites, "-q", *parallel, *extra], cwd=ROOT, env=env)
    print(f"\n===== all suites, {workers} worker(s), {time.monotonic() - started:.0f}s =====")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
