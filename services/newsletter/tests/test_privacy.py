"""No address reaches a shared topic: an SMTP refusal that names the recipient is redacted on DeliveryFailed."""

from __future__ import annotations

from distretto_dev.testing import DatabaseTarget, headers_of, read_topic, service_client
from distretto_shared.contracts import newsletter as contracts
from distretto_shared.events import decode
from newsletter.app import create_app

from .conftest import SmtpSink, add_subscriber, make_settings, setup_list, setup_template, wait_finished


async def test_a_refusal_naming_the_recipient_reaches_the_topic_redacted(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    planted = "planted.refused@privacy.example"
    sink.refuse[planted] = f"550 5.1.1 <{planted}>: Recipient address rejected: User unknown"
    app = create_app(make_settings(database, kafka_bootstrap, sink))
    async with service_client(app) as client:
        await setup_list(client, "news")
        tpl = await setup_template(client)
        await add_subscriber(client, planted, ["news"], name="Planted Person")
        await add_subscriber(client, "fine@privacy.example", ["news"])
        r = await client.post(
            "/campaigns", json={"name": "c", "subject": "s", "template_id": tpl["id"], "lists": ["news"]}
        )
        cid = r.json()["id"]
        assert (await client.post(f"/campaigns/{cid}/start")).status_code == 200
        done = await wait_finished(client, cid)
        assert done["stats"]["failed"] == 1

        records = await read_topic(kafka_bootstrap, topic_prefix + contracts.CAMPAIGN_TOPIC.name, min_count=3)
        subscriber_records = await read_topic(
            kafka_bootstrap, topic_prefix + contracts.SUBSCRIBER_TOPIC.name, min_count=2
        )
        for record in records + subscriber_records:
            raw = record.value + b"".join(v for _k, v in record.headers)
            assert planted.encode() not in raw and b"Planted Person" not in raw, record
        failed = [
            e for _m, e in (decode(headers_of(r), r.value) for r in records) if isinstance(e, contracts.DeliveryFailed)
        ]
        assert len(failed) == 1 and "<address>" in failed[0].reason and "User unknown" in failed[0].reason
