"""Automation from other services' events, over the real broker."""

from __future__ import annotations

import os
from datetime import date
from typing import Any

import httpx
import sqlalchemy as sa

from distretto_dev.testing import DatabaseTarget, publish_events, read_topic, service_client
from distretto_shared.contracts import matchmaking, membership, projects
from distretto_shared.identity import Verifier, parse_trusted_keys
from distretto_shared.kafka_security import default_credentials
from distretto_shared.topics import ensure_topics
from newsletter import domain
from newsletter.app import SPEC, create_app
from newsletter.members import service as members_service

from .conftest import SmtpSink, make_settings, wait_until

PEOPLE: dict[str, dict[str, Any]] = {}
"""What membership answers on GET /contacts/{id}/personal-data (a contact absent here: 404, erased)."""


def contact(cid: str, org: str, email: str, consent: bool, first: str = "Anna") -> membership.ContactReference:
    """The event's view of a person (no personal data); membership's answer is kept in PEOPLE."""
    PEOPLE[cid] = {
        "contact_id": cid,
        "organisation_id": org,
        "first_name": first,
        "last_name": "Bianchi",
        "email": email,
        "consent_newsletter": consent,
    }
    return membership.ContactReference(
        contact_id=cid, organisation_id=org, email_sha256=domain.email_sha256(email), consent_newsletter=consent
    )


def membership_api(asked: list[tuple[str, str]]) -> httpx.AsyncClient:
    """membership's personal-data route as the newsletter sees it (its documented answers)."""

    def answer(request: httpx.Request) -> httpx.Response:
        cid = request.url.path.split("/")[2]
        asked.append((cid, request.headers.get("x-distretto-identity", "")))
        if cid in PEOPLE:
            return httpx.Response(200, json=PEOPLE[cid])
        return httpx.Response(404, json={"error": "not_found", "message": "erased"})

    return httpx.AsyncClient(base_url="http://membership", transport=httpx.MockTransport(answer))


async def fetch_until(client: httpx.AsyncClient, app: Any, predicate: Any, what: str) -> None:
    async def step() -> bool:
        await members_service.fetch_contact_details(app.state.ctx.context(), client=client)
        return bool(predicate())

    await wait_until(step, what=what)


def profile(org: str, name: str) -> membership.OrganisationProfile:
    return membership.OrganisationProfile(organisation_id=org, name=name, kind="company", city="Siena")


async def test_welcome_digest_and_erasure_from_events(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    await ensure_topics(kafka_bootstrap, SPEC.topics)
    settings = make_settings(
        database,
        kafka_bootstrap,
        sink,
        digest_mode="draft",
        membership_url="http://127.0.0.1:9",
        contact_fetch_interval=3600,
    )
    asked: list[tuple[str, str]] = []
    app = create_app(settings)
    async with service_client(app) as client, membership_api(asked) as members_api:
        await publish_events(
            kafka_bootstrap,
            [
                membership.ContactAdded(
                    contact_id="c1", organisation_id="o1", contact=contact("c1", "o1", "anna@biotech.example", True)
                ),
                membership.ContactAdded(
                    contact_id="c2",
                    organisation_id="o1",
                    contact=contact("c2", "o1", "no-news@biotech.example", False, "Nino"),
                ),
                membership.OrganisationJoined(
                    organisation_id="o1", profile=profile("o1", "Toscana Biotech"), joined_on=date.today()
                ),
                projects.MilestoneReached(
                    project_id="p1",
                    milestone_id="m1",
                    number="MS3",
                    title="First-in-human study",
                    reached_on=date(2025, 4, 1),
                    acronym="ONCOTARGET",
                ),
                projects.DeliverableDueSoon(
                    project_id="p1",
                    deliverable_id="d1",
                    number="D2.1",
                    title="Data plan",
                    due_date=date(2025, 6, 1),
                    horizon_days=30,
                    days_left=20,
                    acronym="ONCOTARGET",
                ),
                matchmaking.OpportunityPublished(
                    opportunity_id="op1", opportunity_type="technology_offer", title="CAR-T manufacturing platform"
                ),
            ],
        )
        # a contact added after the join still gets the welcome (the topics are not ordered together)
        await publish_events(
            kafka_bootstrap,
            [
                membership.ContactAdded(
                    contact_id="c3",
                    organisation_id="o1",
                    contact=contact("c3", "o1", "late@biotech.example", True, "Lia"),
                )
            ],
        )
        await fetch_until(
            members_api, app, lambda: sink.to("anna@biotech.example") and sink.to("late@biotech.example"), "welcome"
        )
        # Only consenting contacts' details were asked for; the event itself carried none. The
        # newsletter asked as itself: a credential membership verifies as service:newsletter.
        assert {cid for cid, _ in asked} == {"c1", "c3"}
        verifier = Verifier(audience="membership", keys=parse_trusted_keys(os.environ["DISTRETTO_TRUSTED_KEYS"]))
        assert {verifier.verify(token).id for _, token in asked} == {"service:newsletter"}
        welcome = sink.to("anna@biotech.example")[0].message
        assert "Toscana Biotech" in welcome["Subject"]
        assert "Anna" in welcome.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert sink.to("no-news@biotech.example") == []

        async def welcomes_sent() -> bool:
            mails = (await client.get("/transactional-mails")).json()
            return bool(mails["welcome"]["sent"] == 2 and mails["welcome"]["pending"] == 0)

        await wait_until(welcomes_sent, what="the two welcome mails counted as sent")

        # the same join delivered again (a replay under a new event id) sends nothing more; a later
        # join event of the same organisation (same partition) tells us when the replay was handled
        await publish_events(
            kafka_bootstrap,
            [
                membership.OrganisationJoined(
                    organisation_id="o1", profile=profile("o1", "Toscana Biotech"), joined_on=date.today()
                ),
                membership.OrganisationJoined(
                    organisation_id="o1",
                    profile=profile("o1", "Toscana Biotech"),
                    joined_on=date(2020, 1, 1),
                    first_join=False,
                ),
            ],
        )

        # consenting contacts are on the private members list, confirmed
        members = await client.get("/subscribers", params={"list": "members", "status": "confirmed"})
        assert {s["email"] for s in members.json()["items"]} == {"anna@biotech.example", "late@biotech.example"}

        # digests gather new members, milestones, deadlines and opportunities; drafts by configuration
        sections: dict[str, list[str]] = {}
        campaigns: list[dict[str, Any]] = []

        async def digest() -> bool:
            r = await client.post("/digest")
            if "id" in r.json():
                campaigns.append(r.json())
                for s in r.json()["data"]["sections"]:
                    sections.setdefault(s["title"], []).extend(i["title"] for i in s["items"])
            return len(sections.get("New members", [])) == 2 and len(sections) == 4

        await wait_until(digest, what="digests with every item")
        assert sections["New members"] == ["Toscana Biotech", "Toscana Biotech"]  # today's join and the 2020 one
        assert sections["Project milestones"] == ["ONCOTARGET MS3: First-in-human study"]
        assert sections["Deadlines"] == ["ONCOTARGET D2.1: Data plan"]
        assert sections["Matchmaking opportunities"] == ["CAR-T manufacturing platform"]
        assert all(c["status"] == "draft" and c["kind"] == "digest" for c in campaigns)
        assert len(sink.to("anna@biotech.example")) == 1  # the replayed join sent no second welcome
        r = await client.post(f"/campaigns/{campaigns[0]['id']}/start")
        assert r.json()["recipients"] == 2

        # membership erases a person: erased here too (found by the address's SHA-256)
        anna = next(s for s in members.json()["items"] if s["email"] == "anna@biotech.example")
        await publish_events(
            kafka_bootstrap,
            [
                membership.ContactErased(
                    contact_id="c1", organisation_id="o1", email_sha256=domain.email_sha256("anna@biotech.example")
                )
            ],
        )

        async def erased() -> bool:
            return (await client.get(f"/subscribers/{anna['id']}")).status_code == 404

        await wait_until(erased, what="subscriber erased")
        export = await client.get(f"/subscribers/{anna['id']}/export")
        assert export.status_code == 404

        # Erased meanwhile (membership answers 404): nothing is kept. And an erased address stays
        # suppressed: a consenting contact with the same address (by hash) is never put on the list.
        gone = contact("c9", "o1", "gone@biotech.example", True)
        PEOPLE.pop("c9")
        again = contact("c10", "o1", "anna@biotech.example", True)
        await publish_events(
            kafka_bootstrap,
            [
                membership.ContactAdded(contact_id="c9", organisation_id="o1", contact=gone),
                membership.ContactAdded(contact_id="c10", organisation_id="o1", contact=again),
            ],
        )

        async def c9_dropped() -> bool:
            async with app.state.ctx.db.read() as session:
                rows = (await session.execute(sa.text("SELECT contact_id, details_due FROM member_contact"))).all()
            await members_service.fetch_contact_details(app.state.ctx.context(), client=members_api)
            return "c10" in {r[0] for r in rows} and "c9" not in {r[0] for r in rows}

        await wait_until(c9_dropped, what="the erased-meanwhile contact dropped")
        members_now = await client.get("/subscribers", params={"list": "members", "status": "confirmed"})
        assert {s["email"] for s in members_now.json()["items"]} == {"late@biotech.example"}
        assert "c10" not in {cid for cid, _ in asked}  # suppressed: not even asked for

        # a broken event goes to the dead-letter topic (the backbone does it; the handler is not reached)
        from aiokafka import AIOKafkaProducer

        from distretto_shared.events import encode

        key, headers, _ = encode(
            membership.ContactAdded(contact_id="cx", organisation_id="o1", contact=contact("cx", "o1", "x@y.it", True)),
            source="/tests",
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, **default_credentials().aiokafka())
        await producer.start()
        try:
            await producer.send_and_wait(
                topic_prefix + membership.CONTACT_TOPIC.name,
                value=b'{"contact_id": "cx"}',
                key=key.encode(),
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
        finally:
            await producer.stop()
        dead = await read_topic(kafka_bootstrap, topic_prefix + membership.CONTACT_TOPIC.name + ".dlq", min_count=1)
        assert len(dead) == 1
