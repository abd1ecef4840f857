"""Competence profiles follow membership and projects events over the real broker; a restart rebuilds the index."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import httpx

from distretto_dev.testing import publish_events, service_client, wait_for
from distretto_shared.contracts import membership, projects
from distretto_shared.topics import ensure_topics
from matchmaking.app import create_app
from matchmaking.config import Settings
from matchmaking.opportunities.service import expire_due


def profile(org_id: str, name: str, kind: str, description: str, **kw: Any) -> membership.OrganisationProfile:
    return membership.OrganisationProfile(
        organisation_id=org_id, name=name, kind=kind, description=description, sectors=["medical_devices"], **kw
    )


IMAGING = profile(
    "org-imaging",
    "Istituto di Fisica Applicata",
    "research_institute",
    "Applied physics institute: microwave sensors and imaging systems.",
    competences=["microwave imaging", "antenna design"],
    keywords=["radar", "sensors"],
)
ORTHO = profile(
    "org-ortho",
    "Università di Pisa Biorobotica",
    "university",
    "Biorobotics lab: wearable exoskeletons and rehabilitation robotics.",
    competences=["rehabilitation robotics"],
)
MAMMO = projects.ProjectSummary(
    project_id="p-mammo",
    acronym="MammoScreen",
    title="Innovative and safe microwave-based imaging technology to make breast cancer screening more accurate",
    status="SIGNED",
    objective="A female-friendly breast cancer screening device based on microwave imaging, clinically validated.",
    topics=["HORIZON-MISS-2021-CANCER-02-01"],
    keywords=["breast cancer", "screening", "mammography"],
    member_organisation_ids=["org-ortho"],
)
RD_REQUEST = {
    "opportunity_type": "rd_request",
    "title": "R&D partner wanted: breast cancer screening with microwave imaging",
    "summary": "A medical device SME looks for a research group to validate a microwave mammography prototype.",
    "keywords": ["breast cancer", "screening", "microwave imaging"],
    "sectors": ["medical_devices"],
    "owner_organisation_id": "3c9d1e2f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",  # a medical device SME
}


async def encoded(client: httpx.AsyncClient) -> None:
    """Wait until the background worker has encoded every indexed item (BM25 finds them before)."""

    async def done() -> bool:
        stats = (await client.get("/index")).json()
        return stats["items_pending"] == 0 and stats["changes_behind"] == 0

    await wait_for(done, what="the index's items encoded")


async def ranked(client: httpx.AsyncClient, oid: str) -> list[tuple[str, float]]:
    await encoded(client)
    page = (await client.get(f"/opportunities/{oid}/counterparts", params={"target": "profiles"})).json()
    return [(i["counterpart_id"], i["score"]) for i in page["items"]]


async def test_profiles_follow_events_and_a_restart_rebuilds_the_same_index(
    settings: Settings, kafka_bootstrap: str, topic_prefix: str, publish: Any
) -> None:
    await ensure_topics(kafka_bootstrap, [membership.ORGANISATION_TOPIC, projects.PROJECT_TOPIC])
    async with service_client(create_app(settings)) as client:
        rd = await publish(client, **RD_REQUEST)
        await publish_events(
            kafka_bootstrap,
            [
                membership.OrganisationRegistered(organisation_id=IMAGING.organisation_id, profile=IMAGING),
                membership.OrganisationRegistered(organisation_id=ORTHO.organisation_id, profile=ORTHO),
            ],
        )

        async def known(org_id: str, **expected: Any) -> Any:
            r = await client.get(f"/organisations/{org_id}")
            if r.status_code != 200:
                return None
            body = r.json()
            return body if all(body[k] == v for k, v in expected.items()) else None

        applied = await wait_for(lambda: known("org-ortho", status="applied"), what="organisations registered")
        assert applied["indexed"] is False  # an applicant is not (yet) a member: no profile in the index
        assert await ranked(client, rd["id"]) == []

        await publish_events(
            kafka_bootstrap,
            [
                membership.OrganisationJoined(organisation_id=o.organisation_id, profile=o, joined_on=date(2025, 1, 1))
                for o in (IMAGING, ORTHO)
            ],
        )
        await wait_for(lambda: known("org-ortho", indexed=True), what="members indexed")
        await wait_for(lambda: known("org-imaging", indexed=True), what="members indexed")
        first = await ranked(client, rd["id"])
        assert [org for org, _ in first] == ["org-imaging", "org-ortho"]

        # The robotics lab takes part in MammoScreen: its profile gains the project's text and overtakes.
        await publish_events(kafka_bootstrap, [projects.ProjectRegistered(project_id="p-mammo", project=MAMMO)])
        ortho = await wait_for(
            lambda: known("org-ortho", projects=["MammoScreen: " + MAMMO.title]), what="project linked"
        )
        assert ortho["indexed"]
        after_project = await ranked(client, rd["id"])
        assert [org for org, _ in after_project] == ["org-ortho", "org-imaging"]
        top = (await client.get(f"/opportunities/{rd['id']}/counterparts", params={"target": "profiles"})).json()
        assert "mammography" in top["items"][0]["explanation"]["matched_fields"]["EU projects"]

        # A participant linked later adds the project to the other profile too.
        await publish_events(
            kafka_bootstrap,
            [
                projects.ParticipantLinked(project_id="p-mammo", participant_id="pp-1", organisation_id="org-imaging"),
            ],
        )
        await wait_for(
            lambda: known("org-imaging", projects=["MammoScreen: " + MAMMO.title]), what="participant linked"
        )

        # An update of the organisation's description is followed.
        changed = IMAGING.model_copy(
            update={"description": "Olive oil polyphenols.", "status": "active", "competences": [], "keywords": []}
        )
        await publish_events(
            kafka_bootstrap, [membership.OrganisationUpdated(organisation_id="org-imaging", profile=changed)]
        )
        await wait_for(lambda: known("org-imaging", description="Olive oil polyphenols."), what="update applied")
        # Organisation names are known now: the public view of an opportunity naming one hides it.
        named = await publish(client, **{**RD_REQUEST, "summary": "Joint work with Università di Pisa Biorobotica."})
        public = (await client.get(f"/public/opportunities/{named['id']}")).json()
        assert "Biorobotica" not in public["summary"] and "[organisation]" in public["summary"]

        # The organisation that leaves disappears from every ranking; its own view says so.
        await publish_events(kafka_bootstrap, [membership.OrganisationLeft(organisation_id="org-ortho")])
        await wait_for(lambda: known("org-ortho", status="left", indexed=False), what="member left")
        before_restart = await ranked(client, rd["id"])
        assert [org for org, _ in before_restart] == ["org-imaging"]
        await encoded(client)
        fits = (await client.get("/organisations/org-imaging/opportunities")).json()
        assert [i["counterpart_id"] for i in fits["items"]][:2] and fits["items"][0]["score_parts"]["dense"] != 0
        left = await client.get("/organisations/org-ortho/opportunities")
        assert left.status_code == 409
        stats_before = (await client.get("/index")).json()
        fits_before = [(i["counterpart_id"], i["score"]) for i in fits["items"]]

    # A new service on the same database rebuilds the same index: same rankings, same scores.
    async with service_client(create_app(settings)) as client:
        assert (await client.get("/index")).json()["opportunities"] == stats_before["opportunities"]
        assert (await client.get("/index")).json()["profiles"] == stats_before["profiles"]
        again = await ranked(client, rd["id"])
        assert [o for o, _ in again] == [o for o, _ in before_restart]
        for (_, a), (_, b) in zip(again, before_restart, strict=True):
            assert abs(a - b) < 1e-4
        fits_again = [
            (i["counterpart_id"], i["score"])
            for i in (await client.get("/organisations/org-imaging/opportunities")).json()["items"]
        ]
        assert [o for o, _ in fits_again] == [o for o, _ in fits_before]
        assert all(abs(a - b) < 1e-4 for (_, a), (_, b) in zip(fits_again, fits_before, strict=True))


async def test_a_withdrawn_or_expired_opportunity_leaves_its_owners_profile(
    settings: Settings, kafka_bootstrap: str, topic_prefix: str, publish: Any
) -> None:
    """An opportunity is also an item of its owner's profile: once withdrawn (or expired) the profile no
    longer matches on it, in this instance and in one started afresh."""
    await ensure_topics(kafka_bootstrap, [membership.ORGANISATION_TOPIC])
    imaging = IMAGING.model_copy(update={"organisation_id": str(uuid.uuid4())})
    ortho = ORTHO.model_copy(update={"organisation_id": str(uuid.uuid4())})
    app = create_app(settings)
    soon = date.today() + timedelta(days=1)
    async with service_client(app) as client:
        await publish_events(
            kafka_bootstrap,
            [
                membership.OrganisationJoined(organisation_id=o.organisation_id, profile=o, joined_on=date(2025, 1, 1))
                for o in (imaging, ortho)
            ],
        )

        async def indexed(org_id: str) -> bool:
            r = await client.get(f"/organisations/{org_id}")
            return r.status_code == 200 and bool(r.json()["indexed"])

        await wait_for(lambda: indexed(ortho.organisation_id), what="members indexed")
        await wait_for(lambda: indexed(imaging.organisation_id), what="members indexed")
        rd = await publish(client, **RD_REQUEST)
        assert [org for org, _ in await ranked(client, rd["id"])] == [imaging.organisation_id, ortho.organisation_id]

        # The robotics lab publishes an offer on the very subject: its profile now ranks first, on that item.
        offers = []
        for summary in ("microwave breast imaging", "microwave mammography screening"):
            offers.append(
                await publish(
                    client,
                    opportunity_type="technology_offer",
                    title="Microwave imaging prototype for breast cancer screening",
                    summary=f"We offer a validated {summary} device for clinical studies.",
                    keywords=["breast cancer", "screening", "microwave imaging"],
                    sectors=["medical_devices"],
                    owner_organisation_id=ortho.organisation_id,
                    expires_on=soon.isoformat(),
                )
            )

        async def ortho_entry() -> dict[str, Any]:
            await encoded(client)
            page = (await client.get(f"/opportunities/{rd['id']}/counterparts", params={"target": "profiles"})).json()
            return next(i for i in page["items"] if i["counterpart_id"] == ortho.organisation_id)  # type: ignore[no-any-return]

        # The lab's profile now matches on its offers (explained by one of them).
        first = await ortho_entry()
        assert first["explanation"]["matched_item"]["kind"] == "opportunity", first
        assert first["explanation"]["matched_item"]["key"].split(":")[1].split("#")[0] in {
            uuid.UUID(o["id"]).hex for o in offers
        }

        # One offer withdrawn, the other expired: the profile is back to its own description.
        assert (await client.post(f"/opportunities/{offers[0]['id']}/withdraw")).status_code == 200
        expired = await expire_due(app.state.ctx.context(), on=soon + timedelta(days=1))
        assert expired == [uuid.UUID(offers[1]["id"]).hex]
        after = await ortho_entry()
        assert after["explanation"]["matched_item"]["kind"] != "opportunity", after
        assert after["score_parts"]["dense"] < first["score_parts"]["dense"]
        before_restart = await ranked(client, rd["id"])

    # A service started afresh on the same database agrees.
    async with service_client(create_app(settings)) as client:
        again = await ranked(client, rd["id"])
        assert [o for o, _ in again] == [o for o, _ in before_restart]
        assert all(abs(a - b) < 1e-4 for (_, a), (_, b) in zip(again, before_restart, strict=True))


async def test_another_instance_sees_an_opportunity_join_and_leave_its_owners_profile(
    settings: Settings, kafka_bootstrap: str, topic_prefix: str, payload: Any
) -> None:
    """Only the opportunity's items of the owner's profile travel through the change log: an instance
    that did not write them still matches the profile on the offer (and no longer once withdrawn),
    and scores it as one started afresh on the same database does."""
    await ensure_topics(kafka_bootstrap, [membership.ORGANISATION_TOPIC])
    imaging = IMAGING.model_copy(update={"organisation_id": str(uuid.uuid4())})
    ortho = ORTHO.model_copy(update={"organisation_id": str(uuid.uuid4())})
    async with service_client(create_app(settings)) as a, service_client(create_app(settings)) as b:
        await publish_events(
            kafka_bootstrap,
            [
                membership.OrganisationJoined(organisation_id=o.organisation_id, profile=o, joined_on=date(2025, 1, 1))
                for o in (imaging, ortho)
            ],
        )

        async def indexed() -> bool:
            for client in (a, b):
                for org in (imaging, ortho):
                    r = await client.get(f"/organisations/{org.organisation_id}")
                    if r.status_code != 200 or not r.json()["indexed"]:
                        return False
            return True

        await wait_for(indexed, what="members indexed by both instances")
        created = await a.post("/opportunities", json=payload(**RD_REQUEST))
        assert created.status_code == 201, created.text
        rd = created.json()
        offer = await a.post(
            "/opportunities",
            json=payload(
                opportunity_type="technology_offer",
                title="Microwave imaging prototype for breast cancer screening",
                summary="We offer a validated microwave mammography screening device for clinical studies.",
                keywords=["breast cancer", "screening", "microwave imaging"],
                sectors=["medical_devices"],
                owner_organisation_id=ortho.organisation_id,
            ),
        )
        assert offer.status_code == 201, offer.text

        async def ortho_entry(client: httpx.AsyncClient) -> dict[str, Any]:
            await encoded(a)
            await encoded(client)
            page = (await client.get(f"/opportunities/{rd['id']}/counterparts", params={"target": "profiles"})).json()
            return next(i for i in page["items"] if i["counterpart_id"] == ortho.organisation_id)  # type: ignore[no-any-return]

        on_b = await ortho_entry(b)
        offer_key = f"opportunity:{uuid.UUID(offer.json()['id']).hex}#"
        assert on_b["explanation"]["matched_item"]["kind"] == "opportunity", on_b
        assert on_b["explanation"]["matched_item"]["key"].startswith(offer_key)
        on_a = await ortho_entry(a)
        assert abs(on_a["score"] - on_b["score"]) < 1e-4

        assert (await a.post(f"/opportunities/{offer.json()['id']}/withdraw")).status_code == 200
        after = await ortho_entry(b)
        assert after["explanation"]["matched_item"]["kind"] != "opportunity", after
        assert after["score_parts"]["dense"] < on_b["score_parts"]["dense"]
        on_b_after = await ranked(b, rd["id"])

    async with service_client(create_app(settings)) as fresh:
        again = await ranked(fresh, rd["id"])
        assert [o for o, _ in again] == [o for o, _ in on_b_after]
        assert all(abs(x - y) < 1e-4 for (_, x), (_, y) in zip(again, on_b_after, strict=True))
