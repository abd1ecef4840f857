"""The projector on the real broker: internal events in, public topics out, nothing personal."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa

from distretto_dev.testing import DatabaseTarget, headers_of, publish_events, read_topic, service_client, wait_for
from distretto_shared.contracts import matchmaking as mm
from distretto_shared.contracts import membership as ms
from distretto_shared.contracts import newsletter as nl
from distretto_shared.contracts import projects as pj
from distretto_shared.contracts import public as pub
from distretto_shared.topics import ensure_topics
from partners.app import create_app
from partners.models import PublicEventRow

from .conftest import joined, make_settings

EMAIL = "giulia.planted@example.org"
PHONE = "+39 055 987 6543"
PERSON = "Giulia Plantedbianchi"
DIRTY = f"{PERSON} <{EMAIL}> tel. {PHONE}"
PLANTED = (EMAIL, "055 987", PERSON, "PLNTGL80A41D612X")


def internal_events() -> list[object]:
    """One of every projected internal event (personal values planted where they could hide), plus
    events that must project to nothing."""
    org = joined(1, city=DIRTY, description=DIRTY, website=f"https://x.example/{EMAIL}", vat_number="PLNTGL80A41D612X")
    moved = ms.OrganisationUpdated(
        organisation_id="org-1",
        profile=org.profile.model_copy(update={"sectors": ["biotech", "medtech"], "description": DIRTY + " 2"}),
    )
    return [
        ms.OrganisationRegistered(
            organisation_id="org-2", profile=joined(2, status="applied", description=DIRTY).profile
        ),
        org,
        moved,
        ms.ContactAdded(
            contact_id="c1",
            organisation_id="org-1",
            contact=ms.ContactReference(contact_id="c1", organisation_id="org-1", email_sha256="ab" * 32),
        ),
        ms.OrganisationLeft(organisation_id="org-1", reason=f"{PERSON} retired ({EMAIL})"),
        ms.OrganisationLeft(organisation_id="org-2", reason="never a member"),
        ms.DistrictFiguresChanged(computed_at=datetime.now(UTC), members_total=7, by_kind={"company": 7}),
        pj.ProjectRegistered(
            project_id="p1",
            project=pj.ProjectSummary(
                project_id="p1", acronym="CURE", title="Cure it", status="SIGNED", objective=DIRTY
            ),
        ),
        pj.ProjectStatusChanged(project_id="p1", old_status="SIGNED", new_status="CLOSED"),
        pj.ParticipantAdded(project_id="p1", participant_id="pa1", name=PERSON, role="participant"),
        pj.DeliverableSubmitted(
            project_id="p1",
            deliverable_id="d1",
            number="D1.1",
            title="Report",
            due_date=date(2026, 1, 1),
            submitted_on=date(2026, 1, 2),
        ),
        mm.OpportunityPublished(
            opportunity_id="x1",
            opportunity_type="technology_offer",
            title="A sensor",
            summary=f"Ask {EMAIL}",
            owner_organisation_id="org-1",
        ),
        mm.OpportunityExpired(opportunity_id="x1"),
        mm.OpportunityWithdrawn(opportunity_id="x2"),
        # A newsletter issue: its subject names who to write to; its link carries a reader's trace.
        nl.CampaignPublished(
            campaign_id="cmp1",
            subject_line=f"Bandi di dicembre: scrivete a {EMAIL} o chiamate il {PHONE}",
            web_url=f"https://www.distretto.example/news/dicembre?reader={PERSON.replace(' ', '+')}#{EMAIL}",
            published_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        ),
        nl.CampaignStarted(campaign_id="cmp2", name="Internal: December issue", recipients=412),
    ]


EXPECTED_TYPES = sorted(
    [
        pub.OrganisationJoined.event_type,
        pub.OrganisationChanged.event_type,
        pub.OrganisationLeft.event_type,
        pub.DistrictFiguresChanged.event_type,
        pub.ProjectRegistered.event_type,
        pub.ProjectStatusChanged.event_type,
        pub.DeliverableSubmitted.event_type,
        pub.OpportunityPublished.event_type,
        pub.OpportunityWithdrawn.event_type,
        pub.OpportunityWithdrawn.event_type,
        pub.CampaignPublished.event_type,
    ]
)


async def test_internal_events_become_public_events_without_personal_values(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = make_settings(database, kafka_bootstrap)
    app = create_app(settings)
    await ensure_topics(kafka_bootstrap, [ms.CONTACT_TOPIC])
    async with service_client(app) as client:
        await publish_events(kafka_bootstrap, internal_events())  # type: ignore[arg-type]
        db = app.state.ctx.db

        async def logged() -> list[PublicEventRow]:
            async with db.read() as session:
                rows = list((await session.execute(sa.select(PublicEventRow).order_by(PublicEventRow.seq))).scalars())
            return rows if len(rows) >= len(EXPECTED_TYPES) else []

        rows = await wait_for(logged, what="the public-event log")
        records = []
        for topic in pub.PUBLIC_TOPICS:
            records += await read_topic(kafka_bootstrap, topic_prefix + topic.name, min_count=1, timeout=20)
        assert sorted(headers_of(r)["ce_type"] for r in records) == EXPECTED_TYPES
        assert sorted(r.event_type for r in rows) == EXPECTED_TYPES
        assert {headers_of(r)["ce_id"] for r in records} == {r.event_id for r in rows}
        for record in records:
            text = record.value.decode() + repr(record.headers) + (record.key or b"").decode()
            for value in PLANTED:
                assert value not in text, (headers_of(record)["ce_type"], text)
        for row in rows:
            for value in PLANTED:
                assert value not in row.payload
        by_type = {headers_of(r)["ce_type"]: r for r in records}
        changed = pub.OrganisationChanged.model_validate_json(by_type[pub.OrganisationChanged.event_type].value)
        assert changed.changed == ["sectors"] and changed.sectors == ["biotech", "medtech"]
        left = pub.OrganisationLeft.model_validate_json(by_type[pub.OrganisationLeft.event_type].value)
        assert left.organisation_id == "org-1" and left.name == "Biotech 1 S.r.l."
        assert "owner" not in by_type[pub.OpportunityPublished.event_type].value.decode()
        reasons = sorted(
            pub.OpportunityWithdrawn.model_validate_json(r.value).reason
            for r in records
            if headers_of(r)["ce_type"] == pub.OpportunityWithdrawn.event_type
        )
        assert reasons == ["expired", "withdrawn"]
        campaign = pub.CampaignPublished.model_validate_json(by_type[pub.CampaignPublished.event_type].value)
        assert campaign.web_url == "https://www.distretto.example/news/dicembre"
        assert campaign.subject_line.startswith("Bandi di dicembre: scrivete a [redacted]")
        assert headers_of(by_type[pub.CampaignPublished.event_type])["ce_subject"] == "cmp1"
        # The catalogue is public at the service (the gateway routes it without credentials).
        catalogue = (await client.get("/catalogue")).json()
        assert [t["type"] for t in catalogue["types"]] == list(pub.PUBLIC_TYPE_NAMES)
        doc = (await client.get("/asyncapi.json")).json()
        assert doc["asyncapi"].startswith("3.") and all(
            c.startswith("public.") or "public." in c for c in doc["channels"]
        )
