"""Server-sent events from a real process: resume with Last-Event-ID across a client kill and a
service restart misses nothing and repeats nothing; a partner receives only its granted types."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from distretto_dev.testing import DatabaseTarget, ServiceProcess, publish_events, wait_for
from distretto_shared.contracts import projects as pj

from .conftest import ORG_TYPES, PARTNER, PARTNER_KEY, env_of, joined


async def read_events(
    proc: ServiceProcess, count: int, last_event_id: str | None = None, want_heartbeat: bool = False
) -> tuple[list[dict[str, Any]], bool]:
    """Read ``count`` events from the stream (then, if asked, until a heartbeat comment), then hang up."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    heartbeat = False
    frame: dict[str, str] = {}
    async with (
        proc.client(principal=PARTNER, timeout=httpx.Timeout(10, read=30)) as client,
        client.stream("GET", "/stream", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith(":"):
                heartbeat = True
            elif line == "":
                if "data" in frame:
                    events.append({"id": frame["id"], "event": frame["event"], "data": json.loads(frame["data"])})
                frame = {}
            else:
                name, _, value = line.partition(":")
                frame[name] = value.removeprefix(" ")
            if len(events) >= count and (heartbeat or not want_heartbeat):
                break
    return events, heartbeat


async def test_a_killed_client_resumes_after_a_service_restart_missing_nothing_repeating_nothing(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = env_of(database, kafka_bootstrap, DISTRETTO_DATA_DIR=str(tmp_path / "var"))
    proc = await ServiceProcess("partners", env=env, log_path=tmp_path / "partners.log").start()
    try:
        async with proc.client() as admin:
            created = await admin.post(
                "/partners", json={"name": "Agency", "event_types": ORG_TYPES, "api_key_id": PARTNER_KEY}
            )
            assert created.status_code == 201, created.text
        project = pj.ProjectRegistered(
            project_id="p1", project=pj.ProjectSummary(project_id="p1", acronym="A", title="T", status="SIGNED")
        )
        await publish_events(kafka_bootstrap, [joined(1), project, joined(2), joined(3), joined(4)])  # type: ignore[list-item]

        first, _ = await read_events(proc, 2)  # the client is killed after two events
        proc.kill()
        await publish_events(kafka_bootstrap, [joined(5), joined(6), joined(7)])
        proc = await ServiceProcess("partners", env=env, log_path=tmp_path / "partners.log").start()
        rest, heartbeat = await read_events(proc, 5, last_event_id=first[-1]["id"], want_heartbeat=True)
    finally:
        proc.kill()

    got = first + rest
    subjects = [e["data"]["subject"] for e in got]
    # Nothing missed, nothing repeated (organisations sit on different partitions: their relative
    # order is the log's, not the publishing order).
    assert sorted(subjects) == [f"org-{n}" for n in range(1, 8)] and len(subjects) == 7
    assert len({e["data"]["id"] for e in got}) == 7
    positions = [int(e["id"]) for e in got]
    assert positions == sorted(positions)
    assert {e["event"] for e in got} == {"distretto.public.organisation.joined.v1"}  # no project: not granted
    assert all(e["data"]["type"] == e["event"] and e["data"]["specversion"] == "1.0" for e in got)
    assert heartbeat, "an idle stream sends heartbeat comments"


async def test_a_partner_filters_within_its_grant(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = env_of(database, kafka_bootstrap, DISTRETTO_DATA_DIR=str(tmp_path / "var"))
    proc = await ServiceProcess("partners", env=env, log_path=tmp_path / "partners.log").start()
    try:
        async with proc.client() as admin:
            await admin.post("/partners", json={"name": "A", "event_types": ORG_TYPES, "api_key_id": PARTNER_KEY})
        await publish_events(
            kafka_bootstrap,
            [joined(1), joined(2)],
        )

        async def both_logged() -> bool:
            events, _ = await asyncio.wait_for(read_events(proc, 2), 20)
            return len(events) == 2

        await wait_for(both_logged, what="two events on the stream")
        async with (
            proc.client(principal=PARTNER, timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", "/stream?types=distretto.public.organisation.left.v1&after=0") as response,
        ):
            assert response.status_code == 200
            lines = []
            async for line in response.aiter_lines():
                lines.append(line)
                if line.startswith(": heartbeat"):
                    break
        assert not any(line.startswith("data:") for line in lines), lines  # only joined events exist

        # A partner deactivated while its stream is open stops receiving: the stream ends.
        async with (
            proc.client(principal=PARTNER, timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", "/stream") as response,
        ):
            assert response.status_code == 200
            lines = []
            async for line in response.aiter_lines():
                lines.append(line)
                if line.startswith(": heartbeat"):
                    async with proc.client() as admin:
                        pid = (await admin.get("/partners")).json()["items"][0]["id"]
                        assert (await admin.patch(f"/partners/{pid}", json={"active": False})).status_code == 200
        assert sum(line.startswith("data:") for line in lines) == 2  # the two events, then the end
    finally:
        proc.kill()
