"""The encoder worker as the child process it is when the service is served: lower priority, woken
by writes, started again when it dies, and its command refuses bad settings clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from typing import Any

import httpx

from distretto_dev.testing import DatabaseTarget, service_client, settings_for, wait_for
from matchmaking.app import create_app
from matchmaking.config import Settings
from matchmaking.encoder_process import EncoderChild

REQUEST = {
    "opportunity_type": "technology_request",
    "title": "Wanted: automated GMP process for CAR-T cell manufacturing",
    "summary": "A hospital cell factory looks for a closed bioreactor process to manufacture CAR-T cells.",
    "keywords": ["CAR-T", "GMP manufacturing"],
    "technology_fields": ["cell therapy"],
    "sectors": ["biotech"],
}


async def post(client: httpx.AsyncClient, payload: Any, **overrides: Any) -> dict[str, Any]:
    r = await client.post("/opportunities", json=payload(**overrides))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def dense_ranking(client: httpx.AsyncClient, oid: str) -> list[tuple[str, float]]:
    """The counterparts of ``oid`` with their dense score, once every item is encoded."""

    async def encoded() -> bool:
        stats = (await client.get("/index")).json()
        return stats["items_pending"] == 0 and stats["changes_behind"] == 0

    await wait_for(encoded, what="the index's items encoded by the encoder process")
    page = (await client.get(f"/opportunities/{oid}/counterparts", params={"target": "opportunities"})).json()
    return [(i["counterpart_id"], i["score_parts"]["dense"]) for i in page["items"]]


async def test_the_encoder_process_encodes_at_a_lower_priority_and_is_started_again_when_it_dies(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, payload: Any
) -> None:
    settings = settings_for(Settings, database, kafka_bootstrap, index_encoder_process=True)
    app = create_app(settings)
    async with service_client(app) as client:
        child = app.state.ctx.context().get(EncoderChild)
        pid = await wait_for(lambda: child.pid, what="the encoder process started")
        # Lower than the serving process (the nice value is capped at 19), once it has read its settings.
        lower = min(os.getpriority(os.PRIO_PROCESS, 0) + 10, 19)
        await wait_for(lambda: os.getpriority(os.PRIO_PROCESS, pid) == lower, what="the encoder process niced")

        offer = await post(client, payload)
        request = await post(client, payload, **REQUEST, owner_organisation_id=str(uuid.uuid4()))
        hits = await dense_ranking(client, offer["id"])
        assert [h[0] for h in hits] == [request["id"]] and hits[0][1] > 0.5

        # Killed (out of memory, an operator): the service starts another, which encodes the next write.
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: child.pid not in (None, pid), what="a new encoder process")
        assert child.starts == 2
        other = await post(
            client,
            payload,
            **{**REQUEST, "title": "Wanted: a GMP partner for CAR-T manufacturing"},
            owner_organisation_id=str(uuid.uuid4()),
        )
        hits = await dense_ranking(client, offer["id"])
        assert {h[0] for h in hits} == {request["id"], other["id"]} and all(h[1] > 0.3 for h in hits)
        last = child.pid
    # The service stopped: so did its encoder process.
    assert child.pid is None
    assert last is not None
    await wait_for(lambda: not os.path.exists(f"/proc/{last}") or _zombie(last), what="the encoder process gone")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_worker_command_refuses_settings_it_cannot_read() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "matchmaking", "encode-worker", "--child"],
        input=b"this is not JSON\n",
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2
    assert b"encode-worker: unreadable settings on stdin" in run.stderr
