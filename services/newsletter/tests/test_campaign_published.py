"""A campaign with a public web version is announced (subject and link only) when it starts."""

from __future__ import annotations

from distretto_dev.testing import DatabaseTarget, headers_of, read_topic, service_client
from distretto_shared.contracts import newsletter as contracts
from distretto_shared.conventions import hex_id
from newsletter.app import create_app

from .conftest import SmtpSink, add_subscriber, make_settings, setup_list, setup_template, wait_finished


async def test_a_campaign_with_a_web_version_is_announced_without_anything_about_its_readers(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, sink))
    async with service_client(app) as client:
        await setup_list(client, "news")
        tpl = await setup_template(client)
        await add_subscriber(client, "reader.one@example.org", ["news"], name="Reader One")
        base = {"template_id": tpl["id"], "lists": ["news"]}
        public = (
            await client.post(
                "/campaigns",
                json={
                    **base,
                    "name": "internal name: december",
                    "subject": "Bandi di dicembre — {{ campaign.name | upper }}",
                    "web_url": "https://www.distretto.example/news/2026-12",
                },
            )
        ).json()
        assert public["web_url"] == "https://www.distretto.example/news/2026-12"
        personal = (
            await client.post(
                "/campaigns",
                json={
                    **base,
                    "name": "Auguri",
                    "subject": "Auguri, {{ subscriber.name }}",
                    "web_url": "https://www.distretto.example/news/auguri",
                },
            )
        ).json()
        private = (await client.post("/campaigns", json={**base, "name": "members only", "subject": "Board"})).json()
        for body in (
            {**base, "name": "x", "subject": "x", "web_url": "javascript:alert(1)"},
            {**base, "name": "x", "subject": "x", "web_url": "https://user:pw@example.org/x"},
            {**base, "name": "x", "subject": "x", "web_url": "/relative"},
        ):
            bad = await client.post("/campaigns", json=body)
            assert bad.status_code == 422, bad.text
        for campaign in (public, personal, private):
            assert (await client.post(f"/campaigns/{campaign['id']}/start")).status_code == 200
            await wait_finished(client, campaign["id"])

        records = await read_topic(kafka_bootstrap, topic_prefix + contracts.CAMPAIGN_TOPIC.name, min_count=8)
        announced = {
            headers_of(r)["ce_subject"]: contracts.CampaignPublished.model_validate_json(r.value)
            for r in records
            if headers_of(r)["ce_type"] == contracts.CampaignPublished.event_type
        }
        assert set(announced) == {hex_id(public["id"]), hex_id(personal["id"])}  # no web version: not announced
        assert announced[hex_id(public["id"])].subject_line == "Bandi di dicembre — INTERNAL NAME: DECEMBER"
        assert announced[hex_id(public["id"])].web_url == "https://www.distretto.example/news/2026-12"
        assert announced[hex_id(public["id"])].published_at is not None
        # A subject made for each reader is not shown: the campaign's name stands in.
        assert announced[hex_id(personal["id"])].subject_line == "Auguri"
        for record in records:
            assert b"reader.one" not in record.value and b"Reader One" not in record.value
