"""`make test`: every test suite, each in its own pytest process, against one real Kafka.

Each service is its own deployable with its own SQLModel metadata, so its tests run in
a process of their own (as the service does); the platform's cross-service tests in
tests/ run the services as real processes. One throwaway broker serves every suite
(or KAFKA_BOOTSTRAP_SERVERS, when given). The last line sums the suites up.
"""

from __future__ import annotations

import os
import re
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
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")


def main() -> int:
    sys.path.insert(0, str(ROOT / "shared" / "src"))
    from distretto_shared.kafka_runner import session_broker

    extra = sys.argv[1:]
    suites = [s for s in SUITES if (ROOT / s).exists()]
    totals: dict[str, int] = {}
    failed_suites: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="distretto-test-") as tmp, session_broker(Path(tmp)) as bootstrap:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        print(f"run_tests: Kafka at {bootstrap}; suites: {', '.join(suites)}", flush=True)
        for suite in suites:
            print(f"\n===== {suite} =====", flush=True)
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", suite, "-q", *extra],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            sys.stdout.write(proc.stdout)
            tail = "\n".join(proc.stdout.strip().splitlines()[-3:])
            for n, kind in COUNT.findall(tail):
                kind = "errors" if kind.startswith("error") else kind
                totals[kind] = totals.get(kind, 0) + int(n)
            if proc.returncode != 0:
                failed_suites.append(f"{suite} (exit {proc.returncode})")
    elapsed = time.monotonic() - started
    print(f"\n===== all suites, {elapsed:.0f}s =====")
    if failed_suites:
        print("failed suites: " + ", ".join(failed_suites))
    summary = ", ".join(
        f"{totals.get(k, 0)} {k}"
        for k in ("passed", "failed", "skipped", "errors")
        if totals.get(k) or k in ("passed", "failed")
    )
    print(summary)
    return 1 if failed_suites or totals.get("passed", 0) == 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
