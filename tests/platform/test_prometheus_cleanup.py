"""A test that starts Prometheus leaves none running: not on failure, not when its process is killed.

The Prometheus found running after a CI run had been started by a test process that was killed
(a timeout): the server runs in its own session, so the kill did not reach it, and no `finally`
ran. Now the kernel ends it with the process that started it (PR_SET_PDEATHSIG), and a start that
fails or is interrupted stops what it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from distretto_dev.testing import wait_for
from distretto_shared import monitoring

pytestmark = pytest.mark.skipif(
    not Path(monitoring.PROMETHEUS_BIN).exists(), reason="needs Debian's prometheus (make bootstrap installs it)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is not running
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_a_failing_test_stops_its_prometheus() -> None:
    pid = 0
    with pytest.raises(AssertionError, match="the test failed"):
        async with monitoring.prometheus({}, monitoring.fast_thresholds()) as server:
            assert server.proc is not None
            pid = server.proc.pid
            assert alive(pid)
            raise AssertionError("the test failed")
    assert pid and not alive(pid)


async def test_a_start_that_fails_stops_what_it_started() -> None:
    server = monitoring.PrometheusServer({}, monitoring.alert_rules(monitoring.fast_thresholds()))
    with pytest.raises(RuntimeError, match="not ready in time"):
        await server.start(timeout=0)
    assert server.proc is None
    assert not server.folder.exists()


async def test_a_killed_test_process_takes_its_prometheus_along(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys, time
        from pathlib import Path
        from distretto_shared import monitoring

        async def main():
            server = await monitoring.PrometheusServer({}, {"groups": []}, folder=Path(sys.argv[1])).start()
            print(server.proc.pid, flush=True)
            time.sleep(600)

        asyncio.run(main())
        """
    )
    test_process = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "prometheus")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert test_process.stdout is not None
        pid = int(test_process.stdout.readline())
        assert alive(pid)
        test_process.send_signal(signal.SIGKILL)  # no finally, no atexit
        test_process.wait(10)

        async def gone() -> bool:
            return not alive(pid)

        await wait_for(gone, timeout=30, what="prometheus gone with its parent")
    finally:
        if test_process.poll() is None:
            test_process.kill()
            test_process.wait()
