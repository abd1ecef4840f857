"""Every line a service process writes is one JSON object, with one access line per request."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from distretto_dev.testing import ADMIN, ServiceProcess, identity_auth, own_broker, wait_for
from distretto_shared.dlq import list_dead_letters
from distretto_shared.logging import RepeatFilter

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


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_kafka_library_s_repeated_line_is_written_once_per_interval_with_the_count_left_out() -> None:
    now = [1000.0]
    left_out: list[str] = []
    lines = _Lines()
    lines.addFilter(RepeatFilter(30.0, clock=lambda: now[0], on_suppressed=left_out.append))
    kafka = logging.getLogger("aiokafka.test_repeat")
    other = logging.getLogger("some.library.test_repeat")
    for logger in (kafka, other):
        logger.addHandler(lines)
        logger.propagate = False
    try:
        for i in range(500):  # the broker is away: the same line every 100 ms, its arguments changing
            now[0] += 0.01
            kafka.error("Unable connect to node with id %s: %s", i % 3, "Connection refused")
            other.error("not a Kafka library: %s", i)
        kafka.error("Unable to update metadata from %s", [1])  # another kind: written
        kafka.warning("Unable connect to node with id %s: %s", 1, "x")  # another level: written
        now[0] += 30.0
        kafka.error("Unable connect to node with id %s: %s", 1, "Connection refused")
    finally:
        for logger in (kafka, other):
            logger.removeHandler(lines)
            logger.propagate = True

    written = [(r.name, r.levelname, r.getMessage(), getattr(r, "suppressed", None)) for r in lines.records]
    kafka_lines = [w for w in written if w[0] == kafka.name]
    assert kafka_lines == [
        (kafka.name, "ERROR", "Unable connect to node with id 0: Connection refused", None),
        (kafka.name, "ERROR", "Unable to update metadata from [1]", None),
        (kafka.name, "WARNING", "Unable connect to node with id 1: x", None),
        (kafka.name, "ERROR", "Unable connect to node with id 1: Connection refused", 499),
    ]
    assert len([w for w in written if w[0] == other.name]) == 500  # other loggers are never thinned
    assert left_out == [kafka.name] * 499


async def test_a_service_whose_broker_went_away_writes_each_kafka_error_once_and_counts_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = own_broker(tmp_path, monkeypatch)
    log = tmp_path / "service.log"
    proc = ServiceProcess(
        "tests.backbone.logservice",
        env={
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DISTRETTO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'example.db'}",
            "DISTRETTO_DATA_DIR": str(tmp_path),
            "DISTRETTO_LOG_REPEAT_INTERVAL": "3600",
        },
        log_path=log,
    )
    try:
        await proc.start()
        async with httpx.AsyncClient(base_url=proc.url, timeout=10, auth=identity_auth(ADMIN, "example")) as client:
            await wait_for(lambda: _ready(client), timeout=60, what="ready: consumers and relay connected")
            await asyncio.to_thread(broker.stop)  # the broker goes away under a running service

            async def many_left_out() -> bool:
                text = (await client.get("/metrics")).text
                counts = [
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("distretto_log_records_suppressed_total{")
                ]
                return sum(counts) >= 100

            await wait_for(many_left_out, timeout=120, what="100 repeated Kafka errors left out")
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["broker"]["ok"] is False
    finally:
        proc.stop()
        broker.stop()

    lines, bad = parse(log)
    assert bad == []
    kafka = [(x["logger"], x["level"], x["event"]) for x in lines if str(x.get("logger", "")).startswith("aiokafka")]
    assert kafka, "the broker's absence is still in the log"
    kinds: dict[tuple[str, str, str], int] = {}
    for logger, level, event in kafka:
        kind = (logger, level, re.sub(r"\d+", "N", event))
        kinds[kind] = kinds.get(kind, 0) + 1
    assert all(n == 1 for n in kinds.values()), kinds
