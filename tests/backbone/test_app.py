"""The assembly helper: a service built from a ServiceSpec, with its broker up and down."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from distretto_dev.testing import DatabaseTarget, read_topic, service_client, wait_for
from distretto_shared.app import ServiceSpec, create_app
from distretto_shared.settings import ServiceSettings
from distretto_shared.web import Conflict

from .example import MIGRATIONS, TOPIC, credit, projection


class Credit(BaseModel):
    account_id: str
    amount: int
    seq: int


router = APIRouter()


@router.post("/credits", status_code=201)
async def post_credit(body: Credit, request: Request) -> dict[str, str]:
    if body.amount == 0:
        raise Conflict("a credit of zero changes nothing")
    await credit(request.app.state.ctx.db, body.account_id, body.amount, body.seq)
    return {"status": "recorded"}


SPEC = ServiceSpec(
    name="example",
    settings_cls=ServiceSettings,
    routers=[router],
    migrations=MIGRATIONS,
    consumers=[projection],
    topics=[TOPIC],
)


def settings_for(database: DatabaseTarget, bootstrap: str) -> ServiceSettings:
    return ServiceSettings(
        database_url=database.url,
        database_schema=database.schema,
        kafka_bootstrap_servers=bootstrap,
        relay_poll_interval=0.2,
    )


async def test_service_with_broker_down_starts_accepts_writes_and_says_not_ready(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # Nothing listens on port 1: the broker is "down".
    async with service_client(create_app(SPEC, settings_for(database, "127.0.0.1:1"))) as client:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["checks"]["database"]["ok"] is True and body["checks"]["broker"]["ok"] is False
        # Writes are accepted: their events wait in the outbox.
        assert (await client.post("/credits", json={"account_id": "a", "amount": 5, "seq": 1})).status_code == 201

    # The broker is back: the same database, a new process; the waiting event goes out.
    async with service_client(create_app(SPEC, settings_for(database, kafka_bootstrap))) as client:
        await wait_for(lambda: _ready(client), timeout=60, what="service ready")
        records = await read_topic(kafka_bootstrap, topic_prefix + TOPIC.name, min_count=1, timeout=20)
        assert len(records) == 1


async def _ready(client: object) -> bool:
    return (await client.get("/readyz")).status_code == 200  # type: ignore[attr-defined]


async def test_errors_are_json_with_a_message_and_metrics_count_routes(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    async with service_client(create_app(SPEC, settings_for(database, kafka_bootstrap))) as client:
        missing = await client.post("/credits", json={"account_id": "a"})
        assert missing.status_code == 422
        assert "amount" in missing.json()["message"] and "seq" in missing.json()["message"]
        wrong = await client.post("/credits", json={"account_id": "a", "amount": "lots", "seq": 1})
        assert wrong.status_code == 422 and "amount" in wrong.json()["message"]
        refused = await client.post("/credits", json={"account_id": "a", "amount": 0, "seq": 1})
        assert refused.status_code == 409 and refused.json() == {
            "error": "conflict",
            "message": "a credit of zero changes nothing",
            "details": [],
        }
        ok = await client.post(
            "/credits", json={"account_id": "a", "amount": 1, "seq": 1}, headers={"X-Correlation-ID": "corr-123"}
        )
        assert ok.status_code == 201 and ok.headers["x-correlation-id"] == "corr-123"
        metrics = (await client.get("/metrics")).text
        assert 'distretto_http_requests_total{method="POST",route="/credits",service="example",status="422"}' in metrics
        assert 'route="/credits",service="example",status="201"' in metrics
        records = await read_topic(kafka_bootstrap, topic_prefix + TOPIC.name, min_count=1, timeout=20)
    assert [dict((k, v.decode()) for k, v in r.headers)["correlation_id"] for r in records] == ["corr-123"]


def test_a_periodic_job_reads_its_interval_from_the_named_setting_each_round() -> None:
    from types import SimpleNamespace

    from distretto_shared.app import PeriodicJob

    async def run(_ctx: object) -> None:
        return None

    settings = SimpleNamespace(scan_interval=2.5)
    named = PeriodicJob("scan", "scan_interval", run)
    assert named.seconds(settings) == 2.5
    settings.scan_interval = 7  # a changed setting is read on the next round
    assert named.seconds(settings) == 7.0
    assert PeriodicJob("fixed", 30, run).seconds(settings) == 30.0
    assert PeriodicJob("computed", lambda s: s.scan_interval * 2, run).seconds(settings) == 14.0
