"""The campaign-delivery alert fires against a real Prometheus when a real SMTP server refuses mails."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from distretto_dev.testing import ADMIN, DatabaseTarget, identity_auth, wait_for
from distretto_shared import monitoring
from newsletter.app import create_app

from .conftest import SmtpSink, add_subscriber, make_settings, setup_list, setup_template, wait_finished
from .test_campaigns import start_campaign

pytestmark = pytest.mark.skipif(
    not Path(monitoring.PROMETHEUS_BIN).exists(), reason="needs Debian's prometheus (make bootstrap installs it)"
)


async def test_campaign_delivery_failures_above_the_threshold_fire(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    sink.refuse["gone@example.org"] = "550 5.1.1 <gone@example.org>: no such user"
    sink.refuse["moved@example.org"] = "550 5.1.1 <moved@example.org>: no such user"
    app = create_app(make_settings(database, kafka_bootstrap, sink))
    async with (
        monitoring.serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=20, auth=identity_auth(ADMIN, "newsletter")) as client,
    ):
        thresholds = monitoring.fast_thresholds(service_jobs=("newsletter",))
        async with monitoring.prometheus({"newsletter": [url.removeprefix("http://")]}, thresholds) as prometheus:
            # Scraped at 0 before the campaign: the rate sees the failures arrive.
            await wait_for(lambda: _scraped(prometheus), timeout=60, what="first scrape")
            assert await prometheus.firing("CampaignDeliveryFailing") == []
            await setup_list(client, "news")
            tpl = await setup_template(client)
            for address in ("ok@example.org", "gone@example.org", "moved@example.org"):
                await add_subscriber(client, address, ["news"])
            campaign = await start_campaign(client, tpl["id"], ["news"])
            done = await wait_finished(client, campaign["id"])
            assert (done["stats"]["sent"], done["stats"]["failed"]) == (1, 2)
            [alert] = await wait_for(
                lambda: prometheus.firing("CampaignDeliveryFailing"), timeout=90, what="CampaignDeliveryFailing"
            )
            assert float(alert["value"]) > thresholds.delivery_failure_ratio


async def _scraped(prometheus: monitoring.PrometheusServer) -> bool:
    query = 'distretto_newsletter_emails_failed_total{kind="campaign"}'
    return bool((await prometheus.api("query", query=query))["result"])
