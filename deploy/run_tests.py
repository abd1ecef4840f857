"""`make test`: every test suite in one pytest process, against one real Kafka.

Each service keeps its tables on its own SQLModel metadata (``distretto_shared.tables``), so
the services' models load side by side and one process runs the backbone's tests, every
service's and the platform's cross-service tests (which start the services as real
processes). One throwaway broker serves them all (or KAFKA_BOOTSTRAP_SERVERS, when given).
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
        proc = subprocess.run([sys.executable, "-m", "pytest", *suites, "-q", *extra], cwd=ROOT, env=env)
    print(f"\n===== all suites, one process, {time.monotonic() - started:.0f}s =====")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
