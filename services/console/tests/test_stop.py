"""A console asked to stop (SIGTERM, as from an orchestrator) while a live page is open."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from distretto_dev.testing import DatabaseTarget, ServiceProcess, patience


async def test_asked_to_stop_with_a_live_page_open_the_console_ends_its_stream_and_stops_by_itself(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, gateway: str, tmp_path: Path
) -> None:
    # A live page's stream never ends by itself: the stop ends it (the page resumes from its
    # Last-Event-ID on another instance) and the service's own shutdown runs, instead of the process
    # waiting for the stream until it is killed.
    log = tmp_path / "console.log"
    env = {
        **database.env("CONSOLE"),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CONSOLE_GATEWAY_URL": gateway,
        "CONSOLE_STREAM_POLL_SECONDS": "0.1",
        "DISTRETTO_DATA_DIR": str(tmp_path / "var"),
    }
    proc = await ServiceProcess("console", env=env, log_path=log).start()
    try:
        async with (
            proc.client(timeout=patience(30)) as client,
            client.stream("GET", "/live?after=0") as stream,
        ):
            assert stream.status_code == 200, await stream.aread()
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith(":")  # the stream's opening comment
            proc.terminate()
            async for _ in lines:  # until the server ends the stream
                pass
        assert proc.proc is not None
        code = await asyncio.to_thread(proc.proc.wait, patience(60))
    finally:
        proc.kill()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    # uvicorn exits by the signal it handled (-15) once the service has stopped: not killed.
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert any(r["event"] == "service stopped" for r in records), "the console's shutdown did not run"
    # a stop, not a failure: no request cancelled by the server's grace running out
    assert [r["event"] for r in records if r.get("logger", "").startswith("uvicorn")] == []
