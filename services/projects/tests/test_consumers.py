"""Linking participants to member organisations from the membership events, over the real broker."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from distretto_dev.testing import headers_of, publish_events, read_topic, wait_for
from distretto_shared.contracts import membership as m
from distretto_shared.contracts import projects as contracts
from distretto_shared.conventions import hex_id
from distretto_shared.events import decode, encode
from distretto_shared.kafka_security import default_credentials
from distretto_shared.topics import dlq_topic, ensure_topics, topic_name
from projects.consortium import service
from projects.consortium.domain import normalise_name
from projects.models import MemberOrganisation

from .conftest import ProjectsService


def profile(organisation_id: str, name: str, vat: str | None = None, status: str = "applied") -> m.OrganisationProfile:
    return m.OrganisationProfile(
        organisation_id=organisation_id, name=name, kind="university", vat_number=vat, status=status
    )


async def participant(svc: ProjectsService, project_id: str, participant_id: str) -> dict[str, Any]:
    return dict(await svc.get(f"/projects/{project_id}/participants/{participant_id}"))


async def project_events(kafka_bootstrap: str, topic_prefix: str, min_count: int) -> list[Any]:
    records = await read_topic(kafka_bootstrap, topic_prefix + contracts.PROJECT_TOPIC.name, min_count=min_count)
    return [decode(headers_of(r), r.value)[1] for r in records]


async def test_participant_first_then_organisation_event_links_it(
    svc: ProjectsService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [m.ORGANISATION_TOPIC, contracts.PROJECT_TOPIC])
    project = await svc.project(acronym="LINKME")
    pid = project["id"]
    unipi = await svc.post(f"/projects/{pid}/participants", {"name": "Università di Pisa", "country": "IT"})
    biotech = await svc.post(
        f"/projects/{pid}/participants",
        {"name": "Biotech Tuscany S.r.l.", "vat_number": "IT 01234567890", "role": "coordinator", "country": "IT"},
    )
    stranger = await svc.post(f"/projects/{pid}/participants", {"name": "Charité Berlin", "country": "DE"})
    assert unipi["organisation_id"] is None and biotech["organisation_id"] is None

    await publish_events(
        kafka_bootstrap,
        [
            # by normalised name (accent, case, apostrophe)
            m.OrganisationRegistered(organisation_id="org-unipi", profile=profile("org-unipi", "UNIVERSITA' DI PISA")),
            # by VAT number, although the name differs
            m.OrganisationJoined(
                organisation_id="org-bt",
                profile=profile("org-bt", "BT Life Sciences SpA", vat="01234567890", status="active"),
                joined_on=date(2025, 3, 1),
            ),
        ],
        source="/distretto/membership",
    )

    async def linked() -> bool:
        a = await participant(svc, pid, unipi["id"])
        b = await participant(svc, pid, biotech["id"])
        return a["organisation_id"] == "org-unipi" and b["organisation_id"] == "org-bt"

    await wait_for(linked, what="both participants linked")
    assert (await participant(svc, pid, stranger["id"]))["organisation_id"] is None
    assert (await svc.get(f"/projects/{pid}"))["member_organisation_ids"] == ["org-bt", "org-unipi"]
    assert [p["acronym"] for p in (await svc.get("/projects", organisation_id="org-unipi"))["items"]] == ["LINKME"]

    # The same profile again (an update) links nothing twice.
    await publish_events(
        kafka_bootstrap,
        [m.OrganisationUpdated(organisation_id="org-unipi", profile=profile("org-unipi", "Università di Pisa"))],
    )

    async def renamed() -> bool:
        orgs = (await svc.get("/organisations"))["items"]
        return any(o["name"] == "Università di Pisa" for o in orgs)

    await wait_for(renamed, what="organisation update kept")
    events = await project_events(kafka_bootstrap, topic_prefix, min_count=7)
    linked_events = [e for e in events if isinstance(e, contracts.ParticipantLinked)]
    assert sorted((e.participant_id, e.organisation_id) for e in linked_events) == sorted(
        [(hex_id(unipi["id"]), "org-unipi"), (hex_id(biotech["id"]), "org-bt")]  # events carry the stored form
    )
    updates = [e for e in events if isinstance(e, contracts.ProjectUpdated)]
    assert updates and updates[-1].project.member_organisation_ids == ["org-bt", "org-unipi"]

    # An organisation that leaves is no longer a member taking part.
    await publish_events(kafka_bootstrap, [m.OrganisationLeft(organisation_id="org-bt", reason="closed")])

    async def unlinked() -> bool:
        return (await participant(svc, pid, biotech["id"]))["organisation_id"] is None

    await wait_for(unlinked, what="participant unlinked after the organisation left")
    assert (await svc.get(f"/projects/{pid}"))["member_organisation_ids"] == ["org-unipi"]


async def test_organisation_first_then_participant_is_linked_at_once(
    svc: ProjectsService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [m.ORGANISATION_TOPIC, contracts.PROJECT_TOPIC])
    await publish_events(
        kafka_bootstrap,
        [
            m.OrganisationRegistered(
                organisation_id="org-tls",
                profile=profile("org-tls", "Fondazione Toscana Life Sciences", status="active"),
            )
        ],
    )

    async def known() -> bool:
        return (await svc.get("/organisations"))["total"] == 1

    await wait_for(known, what="organisation in the read model")
    project = await svc.project(acronym="LATECOMER")
    added = await svc.post(
        f"/projects/{project['id']}/participants",
        {"name": "FONDAZIONE TOSCANA LIFE SCIENCES", "role": "participant", "country": "IT", "ec_contribution": 1000},
    )
    assert added["organisation_id"] == "org-tls"
    assert added["is_foundation"] is True
    got = await svc.get(f"/projects/{project['id']}")
    assert got["member_organisation_ids"] == ["org-tls"]
    assert got["foundation_role"] == "partner"

    events = await project_events(kafka_bootstrap, topic_prefix, min_count=4)
    added_event = next(e for e in events if isinstance(e, contracts.ParticipantAdded))
    assert added_event.organisation_id == "org-tls" and added_event.ec_contribution == 1000
    assert any(isinstance(e, contracts.ParticipantLinked) and e.organisation_id == "org-tls" for e in events)
    last_update = [e for e in events if isinstance(e, contracts.ProjectUpdated)][-1]
    assert last_update.project.member_organisation_ids == ["org-tls"]
    assert last_update.project.foundation_role == "partner"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_broken_organisation_event_goes_to_the_dead_letter_topic(
    svc: ProjectsService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, [m.ORGANISATION_TOPIC])
    good = m.OrganisationRegistered(organisation_id="org-x", profile=profile("org-x", "X"))
    _, headers, _ = encode(good, source="/distretto/membership")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, **default_credentials().aiokafka())
    await producer.start()
    try:
        await producer.send_and_wait(
            topic_name(m.ORGANISATION_TOPIC.name),
            value=b'{"organisation_id": "org-x", "profile": {"organisation_id": "org-x"}}',  # no name, no kind
            key=b"org-x",
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()
    dead = await read_topic(kafka_bootstrap, dlq_topic(topic_name(m.ORGANISATION_TOPIC.name)), min_count=1, timeout=30)
    assert len(dead) == 1
    assert "fails" in headers_of(dead[0])["dlq_error"]
    assert (await svc.get("/organisations"))["total"] == 0


async def test_reconciliation_links_a_pair_that_committed_at_the_same_moment(svc: ProjectsService) -> None:
    # Simulate the race: the organisation reached the read model while the participant's
    # transaction was open, so neither path linked them.
    project = await svc.project(acronym="RACE")
    added = await svc.post(f"/projects/{project['id']}/participants", {"name": "Scuola Normale Superiore"})
    async with svc.ctx.db.transaction() as session:
        session.add(
            MemberOrganisation(
                organisation_id="org-sns", name="SCUOLA NORMALE SUPERIORE", name_key="scuola normale superiore"
            )
        )
    assert (await participant(svc, project["id"], added["id"]))["organisation_id"] is None
    assert await service.reconcile_links(svc.ctx.context()) == 1
    assert (await participant(svc, project["id"], added["id"]))["organisation_id"] == "org-sns"
    assert await service.reconcile_links(svc.ctx.context()) == 0
    assert (await svc.outbox_types()).count(contracts.ParticipantLinked.event_type) == 1


async def test_membership_organisation_ids_are_answered_dashed(svc: ProjectsService) -> None:
    """docs/api-conventions.md, "Ids": an organisation id is answered as a dashed UUID, in the read
    model and on the participant linked to it (a row that kept the 32-hex form included)."""
    org = uuid.uuid4()
    name = "Scuola Superiore Sant'Anna"
    async with svc.ctx.db.transaction() as session:
        session.add(MemberOrganisation(organisation_id=org.hex, name=name.upper(), name_key=normalise_name(name)))
    assert [o["organisation_id"] for o in (await svc.get("/organisations"))["items"]] == [str(org)]
    project = await svc.project(acronym="DASHED")
    added = await svc.post(f"/projects/{project['id']}/participants", {"name": name, "country": "IT"})
    assert added["organisation_id"] == str(org)
    assert (await participant(svc, project["id"], added["id"]))["organisation_id"] == str(org)
