"""Routes against a real database and a real SMTP server: opt-in, rate limits, preferences, bounces, GDPR, bad input."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from distretto_dev.testing import DatabaseTarget, headers_of, read_topic, service_client, wait_for
from distretto_shared.contracts import newsletter as contracts
from distretto_shared.conventions import hex_id
from newsletter import domain
from newsletter.app import create_app
from newsletter.links import links_for

from .conftest import (
    SmtpSink,
    add_subscriber,
    make_settings,
    post_bounce,
    setup_list,
    setup_template,
    wait_finished,
    wait_until,
)

TABLES = [
    "mailing_list",
    "subscriber",
    "subscription",
    "subscriber_interest",
    "consent_record",
    "rate_hit",
    "template",
    "campaign",
    "delivery",
    "bounce",
    "outbox",
]


async def row_counts(app: Any) -> dict[str, int]:
    async with app.state.ctx.db.read() as session:
        return {t: (await session.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in TABLES}


def link_in(text: str, path: str) -> str:
    match = re.search(r"http://service(/" + path + r"[^\s\"<>]*)", text)
    assert match, text
    return match.group(1).replace("&amp;", "&")


async def test_double_opt_in_consent_preferences_and_rate_limits(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    settings = make_settings(database, kafka_bootstrap, sink, signup_limit_per_address=2, signup_limit_per_client=4)
    app = create_app(settings)
    async with service_client(app) as client:
        await setup_list(client, "oncology")
        await setup_list(client, "rare-diseases")
        await setup_list(client, "board", visibility="private")
        ua = {"user-agent": "pytest-browser"}
        body = {
            "email": "Giulia.Verdi@Example.org",
            "name": "Giulia Verdi",
            "lists": ["oncology", "rare-diseases"],
            "interests": ["Oncology", "events"],
            "consent": True,
            "consent_wording_version": "v7",
        }
        r = await client.post("/signup", json=body, headers=ua)
        assert r.status_code == 202, r.text

        # the confirmation mail arrives over SMTP with a signed link
        await wait_until(lambda: sink.to("giulia.verdi@example.org"), what="confirmation mail")
        mail = sink.to("giulia.verdi@example.org")[0].message
        assert "confirm" in mail["Subject"].lower()
        confirm_path = link_in(mail.get_body(("plain",)).get_content(), "confirm")  # type: ignore[union-attr]
        sub_id = (await client.get("/subscribers")).json()["items"][0]["id"]
        assert all(
            s["status"] == "unconfirmed" for s in (await client.get(f"/subscribers/{sub_id}")).json()["subscriptions"]
        )

        page = await client.get(confirm_path)
        assert page.status_code == 200 and "<form" in page.text  # a GET does not confirm
        assert all(
            s["status"] == "unconfirmed" for s in (await client.get(f"/subscribers/{sub_id}")).json()["subscriptions"]
        )
        r = await client.post(confirm_path, headers={"accept": "application/json", **ua})
        assert r.status_code == 200 and sorted(r.json()["lists"]) == ["oncology", "rare-diseases"]
        sub = (await client.get(f"/subscribers/{sub_id}")).json()
        assert {s["status"] for s in sub["subscriptions"]} == {"confirmed"} and sub["interests"] == [
            "events",
            "oncology",
        ]

        # consent is recorded: time, source, wording version, client address
        export = (await client.get(f"/subscribers/{sub_id}/export")).json()
        actions = {c["action"]: c for c in export["consent"]}
        assert actions["sign-up"]["wording_version"] == "v7" and actions["sign-up"]["source"] == "web-form"
        assert (
            actions["sign-up"]["client_address"] == "127.0.0.1" and actions["sign-up"]["user_agent"] == "pytest-browser"
        )
        assert actions["confirm"]["at"] and actions["confirm"]["lists"]

        # tampered and expired links are refused, writing nothing
        before = await row_counts(app)
        assert (await client.post(confirm_path[:-3] + "AAA")).status_code == 422
        expired = domain.sign_token(settings.secret_key, "confirm", sub_id, expires=datetime.now(UTC) - timedelta(1))
        r = await client.post(f"/confirm?token={expired}")
        assert r.status_code == 410 and "expired" in r.json()["message"]
        assert await row_counts(app) == before

        # preferences page: shows, then updates (form post as a browser sends it)
        prefs = links_for(settings, sub_id)["preferences_url"].replace("http://service", "")
        page = await client.get(prefs)
        assert page.status_code == 200 and "Rare-Diseases" in page.text and "Board" not in page.text
        r = await client.post(
            prefs,
            content=b"name=Giulia+V.&lists=oncology&interests=oncology%2C+rare+diseases",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200
        sub = (await client.get(f"/subscribers/{sub_id}")).json()
        assert {s["list_slug"]: s["status"] for s in sub["subscriptions"]} == {
            "oncology": "confirmed",
            "rare-diseases": "unsubscribed",
        }
        assert sub["name"] == "Giulia V." and sub["interests"] == ["oncology", "rare diseases"]
        assert (await client.post(prefs, json={"lists": ["board"]})).status_code == 422

        # rate limits: per address (2 per window) then per client (4 per window); 429 with Retry-After
        r = await client.post("/signup", json=body)
        assert r.status_code == 202
        before = await row_counts(app)
        r = await client.post("/signup", json=body)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "address" in r.json()["message"]
        assert await row_counts(app) == before
        for i in range(2):
            assert (await client.post("/signup", json={**body, "email": f"bot{i}@example.org"})).status_code == 202
        r = await client.post("/signup", json={**body, "email": "bot9@example.org"})
        assert r.status_code == 429 and "client" in r.json()["message"]

        # events: SubscriberConfirmed on the real topic, as a CloudEvent
        # the relay publishes after the commit: under load that can take longer than the default 10 s
        records = await read_topic(
            kafka_bootstrap, topic_prefix + contracts.SUBSCRIBER_TOPIC.name, min_count=2, timeout=60
        )
        types = [headers_of(rec)["ce_type"] for rec in records]
        assert contracts.SubscriberConfirmed.event_type in types
        assert contracts.SubscriberUnsubscribed.event_type in types
        assert all(b"@" not in rec.value for rec in records)  # no addresses on the wire


async def test_bounces_gdpr_test_sends_scheduling_and_header_injection(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    settings = make_settings(database, kafka_bootstrap, sink, soft_bounce_limit=2)
    app = create_app(settings)
    async with service_client(app) as client:
        await setup_list(client, "news")
        tpl = await setup_template(client)
        soft = await add_subscriber(client, "soft@example.org", ["news"])
        await add_subscriber(client, "angry@example.org", ["news"])
        evil = await add_subscriber(client, "eve@example.org", ["news"], name="Eve\r\nBcc: victim@evil.example")
        assert "\n" not in evil["name"]

        r = await post_bounce(client, {"email": "soft@example.org", "kind": "soft", "reason": "mailbox full"})
        assert r.status_code == 202 and r.json() == {"status": "accepted", "message": "report received"}
        assert (await client.get(f"/subscribers/{soft['id']}")).json()["suppressed"] is False
        r = await post_bounce(client, {"email": "soft@example.org", "kind": "soft"})
        assert (await client.get(f"/subscribers/{soft['id']}")).json()["suppressed"] is True
        r = await post_bounce(client, {"email": "angry@example.org", "kind": "complaint"})
        assert r.status_code == 202
        bounces = (await client.get("/bounces")).json()
        assert bounces["total"] == 3
        # newest first: the complaint and the second soft bounce suppressed their address, the first did not
        assert [(b["kind"], b["suppressed"]) for b in bounces["items"]] == [
            ("complaint", True),
            ("soft", True),
            ("soft", False),
        ]

        # a subject with a line break cannot add a header either
        r = await client.post(
            "/campaigns",
            json={
                "name": "s",
                "subject": "Hello\r\nBcc: victim@evil.example",
                "template_id": tpl["id"],
                "lists": ["news"],
            },
        )
        cid = r.json()["id"]

        # test sends go to the given addresses now, and leave the ledger alone
        r = await client.post(f"/campaigns/{cid}/test", json={"emails": ["editor@example.org"]})
        assert r.status_code == 200 and r.json()[0]["ok"] and r.json()[0]["smtp_code"] == 250
        test_mail = sink.to("editor@example.org")[0].message
        assert test_mail["Subject"].startswith("[TEST]") and test_mail["List-Unsubscribe-Post"]
        assert (await client.get(f"/campaigns/{cid}/deliveries")).json()["total"] == 0

        # scheduling: a time in the past is refused (it would go out at once) …
        for past in ("2020-03-01T09:00:00+01:00", (datetime.now(UTC) - timedelta(seconds=1)).isoformat()):
            r = await client.post(f"/campaigns/{cid}/schedule", json={"send_at": past})
            assert r.status_code == 422 and "is in the past" in r.json()["message"], r.text
            assert (await client.get(f"/campaigns/{cid}")).json()["status"] == "draft"
        # … a due campaign is started by the scheduler
        due = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        r = await client.post(f"/campaigns/{cid}/schedule", json={"send_at": due})
        assert r.status_code == 200 and r.json()["status"] == "scheduled"
        done = await wait_finished(client, cid)
        assert done["recipients"] == 1 and done["stats"]["sent"] == 1  # suppressed ones excluded
        received = sink.to("eve@example.org")[0]
        assert "Bcc" not in received.message and b"\r\nBcc:" not in received.raw
        assert received.message["Subject"] == "Hello Bcc: victim@evil.example"
        assert sink.to("victim@evil.example") == []

        # GDPR: export everything, then erase
        export = (await client.get(f"/subscribers/{soft['id']}/export")).json()
        assert export["subscriber"]["email"] == "soft@example.org" and len(export["bounces"]) == 2
        assert export["consent"][0]["source"] == "test-import"
        r = await client.delete(f"/subscribers/{soft['id']}")
        assert r.status_code == 204
        assert (await client.get(f"/subscribers/{soft['id']}")).status_code == 404
        assert (await client.get(f"/subscribers/{soft['id']}/export")).status_code == 404

        async def erased_on_the_topic() -> list[Any]:
            # The relay publishes after the commit: wait for the event, not for a number of records.
            records = await read_topic(kafka_bootstrap, topic_prefix + contracts.SUBSCRIBER_TOPIC.name, min_count=1)
            return [r for r in records if headers_of(r)["ce_type"] == contracts.SubscriberErased.event_type]

        erased = await wait_for(erased_on_the_topic, timeout=60, what="SubscriberErased on the subscriber topic")
        assert headers_of(erased[0])["ce_subject"] == hex_id(soft["id"])  # events: the stored form

        async def campaign_events() -> bool:
            records = await read_topic(kafka_bootstrap, topic_prefix + contracts.CAMPAIGN_TOPIC.name, min_count=1)
            return {headers_of(r)["ce_type"] for r in records} >= {
                contracts.CampaignStarted.event_type,
                contracts.CampaignFinished.event_type,
            }

        await wait_for(campaign_events, timeout=60, what="CampaignStarted and CampaignFinished on the campaign topic")

        text = (await client.get("/metrics")).text
        assert "distretto_newsletter_emails_sent_total" in text and "distretto_newsletter_queue_depth" in text


BAD: list[tuple[str, str, Any]] = [
    ("post", "/lists", {"slug": "Not A Slug", "name": "x"}),
    ("post", "/lists", {"slug": "ok", "name": ""}),
    ("post", "/lists", {"slug": "ok", "name": "x", "visibility": "secret"}),
    ("post", "/lists", {"slug": "news", "name": "duplicate"}),
    ("post", "/lists", "not json"),
    ("get", "/lists/nope", None),
    ("get", "/lists/news", None),  # a slug is not an id (the path is documented format uuid)
    ("get", "/lists?limit=0", None),
    ("post", "/subscribers", {"email": "not-an-address", "lists": ["news"]}),
    ("post", "/subscribers", {"email": "x@example.org", "lists": ["unknown"]}),
    ("post", "/subscribers", {"email": "x@example.org", "surprise": 1}),
    ("post", "/subscribers", {"email": "dup@example.org"}),
    ("patch", "/subscribers/nope", {"name": "x"}),
    ("get", "/subscribers?status=bogus", None),
    ("get", "/subscribers/nope/export", None),
    ("delete", "/subscribers/nope", None),
    ("post", "/signup", {"email": "a@example.org", "lists": ["news"], "consent": False}),
    ("post", "/signup", {"email": "a@example.org", "lists": ["board"], "consent": True}),
    ("post", "/signup", {"email": "a@example.org", "lists": [], "consent": True}),
    ("post", "/signup", {"email": "a@example.org\r\nBcc: b@example.org", "lists": ["news"], "consent": True}),
    ("get", "/confirm?token=short", None),
    ("post", "/confirm?token=aaaaaaaaaaaa.bbbbbb", None),
    ("get", "/preferences?token=aaaaaaaaaaaa.bbbbbb", None),
    ("post", "/unsubscribe/aaaaaaaaaaaa.bbbbbb", None),
    ("get", "/unsubscribe/aaaaaaaaaaaa.bbbbbb", None),
    ("post", "/templates", {"name": "t", "subject": "s", "body_html": "{% for %}", "body_text": "x"}),
    ("post", "/templates", {"name": "t", "subject": "s", "body_html": "x"}),
    ("patch", "/templates/nope", {"name": "x"}),
    ("post", "/campaigns", {"name": "c", "subject": "s", "template_id": "nope", "lists": ["news"]}),
    ("post", "/campaigns", {"name": "c", "subject": "s", "template_id": "TPL", "lists": []}),
    ("post", "/campaigns", {"name": "c", "subject": "{{ broken", "template_id": "TPL", "lists": ["news"]}),
    ("post", "/campaigns", {"name": "c", "subject": "s", "template_id": "TPL", "lists": ["nope"]}),
    ("post", "/campaigns/nope/start", None),
    ("post", "/campaigns/CID/pause", None),
    ("post", "/campaigns/CID/resume", None),
    ("post", "/campaigns/CID/schedule", {"send_at": "2030-01-01T09:00:00"}),
    ("post", "/campaigns/CID/schedule", {"send_at": "tomorrow"}),
    ("post", "/campaigns/CID/schedule", {"send_at": "2020-01-01T09:00:00Z"}),
    ("post", "/campaigns/CID/test", {"emails": []}),
    ("post", "/campaigns/CID/test", {"emails": ["bad"]}),
    ("get", "/campaigns?status=bogus", None),
    ("get", "/campaigns/CID/deliveries?offset=-1", None),
    ("post", "/bounces", {"email": "nobody@example.org", "kind": "hard"}),
    ("post", "/bounces", {"email": "dup@example.org", "kind": "sideways"}),
    ("post", "/bounces", {"email": "dup@example.org", "kind": "hard", "campaign_id": "nope"}),
]


async def test_bad_input_on_every_route_is_a_clear_4xx_and_writes_nothing(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, sink))
    async with service_client(app) as client:
        await setup_list(client, "news")
        await setup_list(client, "board", visibility="private")
        tpl = await setup_template(client)
        await add_subscriber(client, "dup@example.org", ["news"])
        r = await client.post(
            "/campaigns", json={"name": "c", "subject": "s", "template_id": tpl["id"], "lists": ["news"]}
        )
        cid = r.json()["id"]
        before = await row_counts(app)
        for method, path, body in BAD:
            path = path.replace("CID", cid)
            if isinstance(body, dict):
                body = {k: (tpl["id"] if v == "TPL" else v) for k, v in body.items()}
                r = await client.request(method, path, json=body)
            elif isinstance(body, str):
                r = await client.request(method, path, content=body, headers={"content-type": "application/json"})
            else:
                r = await client.request(method, path)
            assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
            assert r.json().get("message"), (method, path, r.text)
        assert await row_counts(app) == before
