"""The operations page: Prometheus' view of the platform and dead letters replayed or discarded."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from console import domain
from console.app import create_app
from console.config import Settings
from distretto_dev.testing import headers_of, read_topic, service_client, wait_for
from distretto_shared import monitoring
from distretto_shared.consumer import DLQ_CONSUMER, DLQ_ERROR, DLQ_ERROR_KIND, DLQ_TOPIC, REPLAY_FOR
from distretto_shared.dlq import DISCARDED, PENDING, REPLAYED, list_dead_letters
from distretto_shared.kafka_security import default_credentials
from distretto_shared.topics import TopicSpec, ensure_topics

from .conftest import ADMIN
from .test_pages import CSRF, _csrf

pytestmark = pytest.mark.skipif(
    not Path(monitoring.PROMETHEUS_BIN).exists(), reason="needs Debian's prometheus (make bootstrap installs it)"
)


async def dead_letter(bootstrap: str, origin: str, group: str, seq: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **default_credentials().aiokafka())
    await producer.start()
    try:
        headers = {
            "ce_id": f"evt-{seq}",
            "ce_type": "distretto.example.thing.v1",
            DLQ_ERROR: f"handler refused seq {seq}",
            DLQ_ERROR_KIND: "rejected",
            DLQ_TOPIC: origin,
            DLQ_CONSUMER: group,
        }
        await producer.send_and_wait(
            origin + ".dlq",
            key=b"k",
            value=f'{{"seq": {seq}}}'.encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()


async def test_operator_page_shows_prometheus_and_handles_dead_letters(
    settings: Settings, gateway: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    assert domain.may_open("admin", "/operations") and domain.may_open("operator", "/operations")
    assert not domain.may_open("member", "/operations") and not domain.may_open("staff", "/operations")
    origin = topic_prefix + "example.things.v1"
    await ensure_topics(kafka_bootstrap, [TopicSpec("example.things.v1", partitions=1)])
    for seq in (1, 2):
        await dead_letter(kafka_bootstrap, origin, "projects.projects-organisations", seq)

    addresses = {"gateway": [gateway.removeprefix("http://")]}
    async with monitoring.prometheus(addresses, monitoring.fast_thresholds(service_jobs=("gateway",))) as prometheus:
        settings.prometheus_url = prometheus.url
        await wait_for(lambda: _scraped(prometheus), timeout=60, what="gateway scraped")
        await wait_for(lambda: _rated(prometheus), timeout=60, what="two scrapes of the gateway (a rate)")
        async with service_client(create_app(settings)) as client:
            client.headers["Accept-Language"] = "en"
            token = await _csrf(client)
            assert (await client.post("/login", data={**ADMIN, "csrf_token": token})).status_code == 303
            page = await client.get("/operations")
            assert page.status_code == 200, page.text[:500]
            assert 'href="/operations"' in page.text
            assert "Prometheus does not answer" not in page.text
            services = page.text.split('data-testid="services"')[1].split("</table>")[0]
            assert "<td>gateway</td><td>up</td>" in services
            # The charts: one per console panel of monitoring.PANELS, Chart.js data read from query_range.
            for panel in monitoring.console_panels():
                assert f'data-testid="chart-{panel.key}"' in page.text, panel.key
            chart = page.text.split('data-testid="chart-http_rate"')[1].split("</figure>")[0]
            series = json.loads(html.unescape(chart.split('data-series="')[1].split('"')[0]))
            assert len(series["labels"]) == 61  # 30 minutes, a point every 30 s
            [gateway_line] = [d for d in series["datasets"] if d["label"] == "gateway"]
            assert gateway_line["data"][-1] is not None and gateway_line["data"][-1] > 0  # scrapes are requests
            assert "<span>gateway</span>" in chart  # the latest values, readable without the canvas
            letters = page.text.split('data-testid="dead-letters"')[1].split("</table>")[0]
            assert letters.count('data-status="pending"') == 2 and "handler refused seq 1" in letters
            assert "Replay to projects.projects-organisations" in letters
            csrf = CSRF.search(page.text)
            assert csrf
            form = {"csrf_token": csrf.group(1), "topic": origin + ".dlq"}

            replayed = await client.post("/operations/dead-letters/replay", data={**form, "offset": "0"})
            assert replayed.status_code == 303
            refused = await client.post("/operations/dead-letters/discard", data={**form, "offset": "1", "reason": ""})
            assert refused.status_code == 422 and "Say why it is discarded." in refused.text
            again = await client.post("/operations/dead-letters/replay", data={**form, "offset": "0"})
            assert again.status_code == 409 and "already resolved" in again.text  # never replayed twice
            bogus = await client.post("/operations/dead-letters/replay", data={**form, "offset": "x"})
            assert bogus.status_code == 422
            discarded = await client.post(
                "/operations/dead-letters/discard", data={**form, "offset": "1", "reason": "a test record"}
            )
            assert discarded.status_code == 303
            after = await client.get("/operations")
            assert 'data-status="replayed"' in after.text and "discarded: a test record" in after.text

    states = [(d.offset, d.status) for d in await list_dead_letters(kafka_bootstrap, origin)]
    assert states == [(0, REPLAYED), (1, DISCARDED)]
    assert PENDING not in {s for _, s in states}
    [record] = await read_topic(kafka_bootstrap, origin, min_count=1)
    assert headers_of(record)[REPLAY_FOR] == "projects.projects-organisations"  # for the group that failed only


async def test_without_prometheus_the_page_says_so(settings: Settings) -> None:
    settings.prometheus_url = "http://127.0.0.1:1"
    async with service_client(create_app(settings)) as client:
        client.headers["Accept-Language"] = "en"
        token = await _csrf(client)
        await client.post("/login", data={**ADMIN, "csrf_token": token})
        page = await client.get("/operations")
        assert page.status_code == 200 and 'data-testid="prometheus-down"' in page.text


async def _scraped(prometheus: monitoring.PrometheusServer) -> bool:
    result = (await prometheus.api("query", query='up{job="gateway"}'))["result"]
    return bool(result) and result[0]["value"][1] == "1"


async def _rated(prometheus: monitoring.PrometheusServer) -> bool:
    query = 'sum by (service) (rate(distretto_http_requests_total{service="gateway"}[5m]))'
    result = (await prometheus.api("query", query=query))["result"]
    return bool(result) and float(result[0]["value"][1]) > 0
