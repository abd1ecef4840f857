"""Events on the real broker: once per change, valid against their contracts, with the CloudEvents headers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from distretto_dev.testing import headers_of, read_topic, service_client, wait_for
from distretto_shared.contracts import membership as contracts
from distretto_shared.events import decode
from distretto_shared.kafka_security import default_credentials
from distretto_shared.outbox import OutboxMessage
from membership.app import create_app
from membership.config import Settings
from membership.contacts.domain import email_sha256
from membership.figures import service as figures_service
from membership.lifecycle import service as lifecycle

FIGURES = {"staff": 20, "rd_staff": 2, "turnover_eur": 1e6, "lab_m2": 40, "patents": 0}


async def _drained(membership: Any) -> bool:
    async with membership.ctx.db.read() as session:
        query = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))  # type: ignore[union-attr]
        return (await session.execute(query)).scalar_one() == 0


async def _read_all(kafka_bootstrap: str, prefix: str, expected: int) -> list[Any]:
    records: list[Any] = []
    for topic in (contracts.ORGANISATION_TOPIC, contracts.CONTACT_TOPIC, contracts.FIGURES_TOPIC):
        records += await read_topic(kafka_bootstrap, prefix + topic.name, timeout=5, min_count=1)
    assert len(records) == expected, Counter(headers_of(r)["ce_type"] for r in records)
    return records


async def test_each_change_publishes_one_valid_event(membership: Any, kafka_bootstrap: str, topic_prefix: str) -> None:
    http = membership.http
    a = await membership.create(name="Alfa")
    oid = a["id"]
    assert (await http.patch(f"/organisations/{oid}", json={"description": "New"})).status_code == 200
    assert (await http.patch(f"/organisations/{oid}", json={"description": "New"})).status_code == 200  # no change
    for _ in range(2):  # the second PUT changes nothing
        assert (await http.put(f"/organisations/{oid}/figures/2024", json=FIGURES)).status_code == 200
    await membership.post(f"/organisations/{oid}/approve")
    await membership.post(f"/organisations/{oid}/suspend", {"reason": "audit"})
    await membership.post(f"/organisations/{oid}/reinstate")
    await membership.post(f"/organisations/{oid}/renewals", {"paid_on": "2026-01-15"}, expect=201)  # stays active
    assert (await http.post(f"/organisations/{oid}/reject")).status_code == 409  # refused: no event

    b = await membership.create(name="Beta")
    joined = (datetime.now(UTC).date() - timedelta(days=700)).isoformat()
    await membership.post(f"/organisations/{b['id']}/approve", {"joined_on": joined})
    assert await lifecycle.lapse_overdue(membership.ctx) == [b["id"]]
    await membership.post(f"/organisations/{b['id']}/renewals", {}, expect=201)

    c = await membership.create(name="Gamma")
    await membership.post(f"/organisations/{c['id']}/reject", {"reason": "out of scope"})
    await membership.post(f"/organisations/{oid}/leave", {"reason": "moved"})

    contact = await membership.post(
        f"/organisations/{oid}/contacts",
        {
            "first_name": "Anna",
            "last_name": "Rossi",
            "email": "Anna.Rossi@alfa.example",
            "phone": "+39 0577 123456",
            "consent_newsletter": True,
        },
        expect=201,
    )
    assert (await http.patch(f"/contacts/{contact['id']}", json={"role": "CTO"})).status_code == 200
    await membership.post(f"/contacts/{contact['id']}/erase")

    assert await figures_service.publish_figures_if_changed(membership.ctx) is True
    assert await figures_service.publish_figures_if_changed(membership.ctx) is False

    await wait_for(lambda: _drained(membership), what="outbox drained")
    records = await _read_all(kafka_bootstrap, topic_prefix, 19)

    decoded = []
    for record in records:
        h = headers_of(record)
        assert h["ce_specversion"] == "1.0"
        assert h["ce_source"] == "/distretto/membership"
        assert h["content-type"] == "application/json"
        assert h["ce_subject"] == record.key.decode()
        assert h["ce_time"] and h["correlation_id"]
        assert h["traceparent"].startswith("00-")
        _meta, event = decode(h, record.value)  # raises unless the body validates against its contract
        assert type(event).event_type == h["ce_type"]
        decoded.append(event)
    assert len({headers_of(r)["ce_id"] for r in records}) == len(records)

    counts = Counter(type(e).__name__ for e in decoded)
    assert counts == {
        "OrganisationRegistered": 3,
        "OrganisationUpdated": 2,  # the description, then the size class the figures gave
        "OrganisationJoined": 4,  # Alfa approved and reinstated, Beta approved and renewed
        "OrganisationSuspended": 1,
        "OrganisationLapsed": 1,
        "OrganisationRenewed": 2,  # Alfa's early renewal (no status change), Beta's after lapsing
        "OrganisationRejected": 1,
        "OrganisationLeft": 1,
        "ContactAdded": 1,
        "ContactUpdated": 1,
        "ContactErased": 1,
        "DistrictFiguresChanged": 1,
    }
    joins = [(e.organisation_id, e.first_join) for e in decoded if isinstance(e, contracts.OrganisationJoined)]
    assert sorted(joins) == sorted([(oid, True), (oid, False), (b["id"], True), (b["id"], False)])
    renewed = {e.organisation_id: e for e in decoded if isinstance(e, contracts.OrganisationRenewed)}
    assert (renewed[oid].reactivated, renewed[b["id"]].reactivated) == (False, True)
    alfa_now = await membership.get(f"/organisations/{oid}")
    assert renewed[oid].paid_on.isoformat() == "2026-01-15"
    assert renewed[oid].renewal_due.isoformat() == renewed[oid].period_end.isoformat() == alfa_now["renewal_due"]
    updated = [e for e in decoded if isinstance(e, contracts.OrganisationUpdated)]
    assert [u.profile.size_class for u in updated if u.organisation_id == oid] == [None, "small"]
    erased = next(e for e in decoded if isinstance(e, contracts.ContactErased))
    assert erased.email_sha256 == email_sha256("anna.rossi@alfa.example")
    assert "Anna" not in erased.model_dump_json()
    added = next(e for e in decoded if isinstance(e, contracts.ContactAdded))
    assert added.contact.consent_newsletter is True
    assert added.contact.email_sha256 == email_sha256("anna.rossi@alfa.example")
    # No record on any topic carries the person's name, address or phone in the clear.
    for record in records:
        raw = record.value + b"".join(v for _k, v in record.headers)
        for planted in (b"Anna", b"Rossi", b"anna.rossi@alfa.example", b"Anna.Rossi", b"0577 123456"):
            assert planted not in raw, (planted, record.topic)
    figures = next(e for e in decoded if isinstance(e, contracts.DistrictFiguresChanged))
    assert figures.by_status == {"active": 1, "left": 1, "rejected": 1}
    assert figures.members_total == 1


async def test_district_figures_are_published_when_they_change_not_on_every_write(membership: Any) -> None:
    ctx = membership.ctx

    async def figure_events() -> int:
        types = await membership.outbox_types()
        return types.count(contracts.DistrictFiguresChanged.event_type)

    assert await figures_service.publish_figures_if_changed(ctx) is True  # the first baseline
    for i in range(6):  # a burst of writes between two runs of the job …
        org = await membership.create(name=f"Burst {i}")
        await membership.post(f"/organisations/{org['id']}/approve")
    assert await figures_service.publish_figures_if_changed(ctx) is True  # … is one event
    assert await figure_events() == 2
    await membership.http.patch(f"/organisations/{org['id']}", json={"description": "not a figure"})
    assert await figures_service.publish_figures_if_changed(ctx) is False
    await membership.post(f"/organisations/{org['id']}/suspend")
    assert await figures_service.publish_figures_if_changed(ctx) is True
    assert await figure_events() == 3


async def test_the_figures_job_publishes_on_its_own(
    settings: Settings, kafka_bootstrap: str, topic_prefix: str
) -> None:
    app = create_app(settings.model_copy(update={"figures_interval": 0.2}))
    async with service_client(app) as http:
        org = (await http.post("/organisations", json={"name": "Solo", "kind": "company"})).json()
        await http.post(f"/organisations/{org['id']}/approve")

        async def published_one_member() -> bool:
            records = await read_topic(kafka_bootstrap, topic_prefix + contracts.FIGURES_TOPIC.name, timeout=2)
            events = [decode(headers_of(r), r.value)[1] for r in records]
            return any(e.members_total == 1 for e in events)  # type: ignore[attr-defined]

        await wait_for(published_one_member, timeout=30, interval=0.3, what="DistrictFiguresChanged with 1 member")


async def test_the_retired_contact_topic_and_its_dead_letters_are_deleted(
    settings: Settings, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # An installation that ran membership.contact.v1 has people's names and addresses on it.
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    old = topic_prefix + contracts.RETIRED_CONTACT_TOPIC
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, **default_credentials().aiokafka())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in (old, old + ".dlq")])
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, **default_credentials().aiokafka())
        await producer.start()
        try:
            await producer.send_and_wait(old, b'{"contact": {"email": "old.v1@alfa.example"}}')
        finally:
            await producer.stop()

        async def gone() -> bool:
            return not {old, old + ".dlq"} & set(await admin.list_topics())

        assert not await gone()
        async with service_client(create_app(settings)):
            await wait_for(gone, timeout=60, what="the retired topic deleted")
    finally:
        await admin.close()
