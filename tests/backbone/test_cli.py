"""``distretto``, the operator's command line, against the real broker and real files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distretto_dev.testing import free_port, wait_for
from distretto_shared.cli import app
from distretto_shared.db import Database
from distretto_shared.dlq import DISCARDED, PENDING, REPLAYED, list_dead_letters

from .test_consumer import credited, encoded, send_raw
from .test_dlq import FAILING, _all_handled, three_groups

runner = CliRunner()


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = await asyncio.to_thread(runner.invoke, app, list(args), env=env)
    return result.exit_code, result.output


async def test_dlq_commands(db: Database, kafka_bootstrap: str, topics: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("COLUMNS", "250")
    FAILING["group-b"] = {1, 2}
    await send_raw(kafka_bootstrap, topics, [encoded(credited("acc", s)) for s in (1, 2, 3)])
    async with three_groups(db, kafka_bootstrap):
        await wait_for(lambda: _all_handled(db, 3), what="handled")
        code, out = await cli("dlq", "list", topics, "--json")
        assert code == 0
        entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert [(e["consumer"], e["status"], e["value"]["seq"]) for e in entries] == [
            ("example.group-b", PENDING, 1),
            ("example.group-b", PENDING, 2),
        ]
        code, out = await cli("dlq", "show", topics, str(entries[0]["offset"]))
        assert code == 0 and "group-b refuses seq 1" in out and '"seq": 1' in out and "ce_type" in out

        FAILING["group-b"] = set()
        code, out = await cli("dlq", "replay", topics, "--offset", str(entries[0]["offset"]))
        assert code == 0 and "replayed 1 dead letter(s)" in out and "→ example.group-b" in out
        code, out = await cli("dlq", "discard", topics, "--offset", str(entries[1]["offset"]))
        assert code == 2 and "--reason" in out  # a discard needs a reason
        code, out = await cli("dlq", "discard", topics, "--offset", str(entries[1]["offset"]), "--reason", "a test")
        assert code == 0 and "discarded 1" in out
        code, out = await cli("dlq", "replay", topics, "--offset", "999")
        assert code == 2 and "no dead letter at offset(s) [999]" in out
    assert [d.status for d in await list_dead_letters(kafka_bootstrap, topics)] == [REPLAYED, DISCARDED]
    code, out = await cli("dlq", "list", topics)
    assert code == 0 and "replayed" in out and "discarded" in out


async def test_status_and_logs_read_the_stack_make_up_recorded(tmp_path: Path, kafka_bootstrap: str) -> None:
    (tmp_path / "var" / "run").mkdir(parents=True)
    log = tmp_path / "var" / "log" / "membership.log"
    log.parent.mkdir(parents=True)
    down = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "var" / "run" / "stack.json").write_text(
        json.dumps([{"name": "membership", "url": down, "ready_path": "/readyz", "log": str(log)}])
    )
    lines = [
        {"event": "request", "level": "info", "timestamp": "2026-01-01T10:00:00.000Z", "route": "/organisations"},
        {"event": "boom", "level": "error", "timestamp": "2026-01-01T10:00:01.000Z", "exception": "Traceback: X"},
    ]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    env = {
        "DISTRETTO_HOME": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "COLUMNS": "200",
        "DISTRETTO_TOPIC_PREFIX": "status-test-nothing.",  # the shared test broker's other topics are not ours
    }
    code, out = await cli("status", env=env)
    assert code == 0
    assert "membership" in out and "down" in out and "kafka" in out
    code, out = await cli("logs", "membership", "-n", "10", env=env)
    assert code == 0
    assert "request" in out and 'route="/organisations"' in out and "Traceback: X" in out and "not json" in out
    code, out = await cli("logs", "nowhere", env=env)
    assert code == 2 and "no log for 'nowhere'" in out
