"""Every line a service process writes is one JSON object, with one access line per request."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from distretto_dev.testing import ADMIN, ServiceProcess, identity_auth, wait_for
from distretto_shared.dlq import list_dead_letters

from .example import TOPIC
from .test_consumer import send_raw

ROOT = Path(__file__).resolve().parents[2]
PERSONAL = "mario.rossi@example.org"


def parse(log: Path) -> tuple[list[dict[str, Any]], list[str]]:
    good, bad = [], []
    for line in log.read_text(errors="replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        (good if isinstance(item, dict) else bad).append(item)
    return good, bad


async def test_a_service_process_writes_only_json_lines(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    log = tmp_path / "service.log"
    proc = ServiceProcess(
        "tests.backbone.logservice",
        env={
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DISTRETTO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'example.db'}",
            "DISTRETTO_DATA_DIR": str(tmp_path),
        },
        log_path=log,
    )
    await proc.start()
    try:
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
            await wait_for(lambda: _ready(client), timeout=60, what="ready")
        # A connection per call: uvicorn closes the one an unhandled exception went through.
        async with httpx.AsyncClient(
            base_url=proc.url,
            timeout=10,
            limits=httpx.Limits(max_keepalive_connections=0),
            auth=identity_auth(ADMIN, "example"),
        ) as client:
            calls = [
                ("POST", "/credits", {"account_id": PERSONAL, "amount": 1, "seq": 1}, 201),
                ("POST", "/credits", {"account_id": PERSONAL, "amount": "lots"}, 422),
                ("POST", "/credits", {"account_id": PERSONAL, "amount": 0, "seq": 2}, 409),
                ("GET", f"/nowhere/{PERSONAL}", None, 404),
                ("GET", "/chatty", None, 200),
                ("GET", "/boom", None, 500),
                ("GET", "/metrics", None, 200),
            ]
            for i, (method, path, body, status) in enumerate(calls):
                r = await client.request(method, path, json=body, headers={"X-Correlation-ID": f"call-{i}"})
                assert r.status_code == status, (path, r.text)
        # A poison record: the consumer dead-letters it and says so.
        topic = topic_prefix + TOPIC.name
        await send_raw(kafka_bootstrap, topic, [(b"k", {"ce_id": "x"}, b"not json")])
        await wait_for(lambda: list_dead_letters(kafka_bootstrap, topic), what="dead-lettered")
    finally:
        proc.stop()

    lines, bad = parse(log)
    assert bad == []
    assert PERSONAL not in log.read_text()  # no path value, body or query string is logged
    access = [x for x in lines if x.get("event") == "request"]
    seen = {(x["method"], x["route"], x["status"]) for x in access}
    assert {
        ("POST", "/credits", 201),
        ("POST", "/credits", 422),
        ("POST", "/credits", 409),
        ("GET", "unmatched", 404),
        ("GET", "/chatty", 200),
        ("GET", "/boom", 500),
        ("GET", "/metrics", 200),
    } <= seen
    assert {x["principal"] for x in access if x["route"] == "/credits"} == {ADMIN.id}  # the verified caller
    for x in access:
        assert x["service"] == "example" and x["duration_ms"] >= 0 and x["correlation_id"]
    boom = [x for x in lines if "the handler broke" in json.dumps(x)]
    assert boom and all("exception" in x and "Traceback" in x["exception"] for x in boom), boom
    events = {x.get("event", "") for x in lines}
    assert any("a library speaks through the standard logger: hello" in e for e in events)
    assert any("a library warns" in e for e in events)
    assert "message dead-lettered" in events
    assert "service stopped" in events
    assert all(x.get("service") == "example" for x in lines if x.get("logger") == "some.library")


async def _ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/readyz")).status_code == 200
    except httpx.HTTPError:
        return False
