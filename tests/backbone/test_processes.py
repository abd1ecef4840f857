"""A service process a test starts dies with the test process, even one killed by SIGKILL: an
interrupted run leaves no service behind (they spun on the next run's CPU, each reconnecting to a
broker that was gone)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from distretto_dev.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]

STARTER = """
import asyncio, os, sys
from distretto_dev.testing import ServiceProcess

proc = ServiceProcess("tests.backbone.logservice", env={
    "PYTHONPATH": os.environ["STARTER_PYTHONPATH"],
    "DISTRETTO_DATABASE_URL": os.environ["STARTER_DATABASE_URL"],
    "DISTRETTO_DATA_DIR": os.environ["STARTER_DATA_DIR"],
})
asyncio.run(proc.start())
print(proc.proc.pid, flush=True)
sys.stdin.read()  # until the test kills this process
"""


def _state(pid: int) -> str | None:
    """The process's state letter (``Z``: a zombie, dead and not reaped yet), None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


async def test_a_service_process_dies_with_the_test_process_that_started_it_even_by_sigkill(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STARTER_PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "STARTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'example.db'}",
        "STARTER_DATA_DIR": str(tmp_path),
    }
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT
    )
    service = 0
    try:
        assert starter.stdout is not None
        line = starter.stdout.readline()
        assert line.strip().isdigit(), f"the starter did not start its service: {line!r}"
        service = int(line)
        assert _state(service) not in (None, "Z")  # it answered /healthz: running

        starter.kill()  # SIGKILL: no finally, no atexit in the starter
        starter.wait()

        async def gone() -> bool:
            return _state(service) in (None, "Z")

        await wait_for(gone, timeout=20, what="the service gone with the process that started it")
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        if service and _state(service) not in (None, "Z"):
            os.kill(service, 9)
