"""The activity feed's consumer: a fetched batch of platform events becomes its rows in one go, in order."""

from __future__ import annotations

from datetime import UTC, date, datetime

from console import service
from console.app import MIGRATIONS
from console.consumers import consumers
from distretto_dev.testing import DatabaseTarget
from distretto_shared.consumer import ConsumerRunner, Outcome, Record
from distretto_shared.contracts import membership as ms
from distretto_shared.contracts import projects as pj
from distretto_shared.db import Database
from distretto_shared.events import Event, encode
from distretto_shared.migrations import upgrade_async
from distretto_shared.topics import topic_name


def as_records(events: list[Event]) -> list[Record]:
    out = []
    for offset, event in enumerate(events):
        key, headers, body = encode(event, source="/distretto/membership")
        out.append(
            Record(
                topic=topic_name(event.topic),
                partition=0,
                offset=offset,
                key=key.encode(),
                value=body,
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
        )
    return out


async def test_a_batch_of_events_becomes_the_feed_in_order_each_event_once(database: DatabaseTarget) -> None:
    await upgrade_async(MIGRATIONS, database.url, database.schema)
    db = Database(database.url, schema=database.schema)
    # No dead letter is expected, so no broker is needed.
    runner = ConsumerRunner(consumers, db=db, service="console", bootstrap_servers="127.0.0.1:1")
    assert set(consumers.handlers) <= consumers.core  # every type on the Core unit of work (no ORM session)
    profile = ms.OrganisationProfile(organisation_id="o-7", name="Nuova Bio S.r.l.", kind="company")
    events: list[Event] = [
        ms.OrganisationRegistered(organisation_id="o-7", profile=profile),
        ms.OrganisationRejected(organisation_id="o-8"),  # never named: the feed says "?"
        ms.OrganisationSuspended(organisation_id="o-7"),  # no profile: the name told earlier in this batch
        ms.DistrictFiguresChanged(computed_at=datetime.now(UTC), members_total=3, by_kind={"company": 3}),
        pj.DeliverableDueSoon(
            project_id="p-1",
            deliverable_id="d-1",
            number="D1.1",
            title="Plan",
            due_date=date(2026, 12, 20),
            acronym="ONCO",
            horizon_days=30,
            days_left=15,
        ),
        ms.OrganisationJoined(organisation_id="o-7", profile=profile, joined_on=date(2026, 12, 1), first_join=False),
    ]
    try:
        batch = as_records(events)
        assert await runner.handle_batch(batch) == [Outcome.HANDLED] * 6
        # Redelivered together with a new event: only the new one adds a row, which finds the name in the table.
        again = as_records([ms.OrganisationLapsed(organisation_id="o-7")])
        assert await runner.handle_batch(batch[:2] + again) == [Outcome.DUPLICATE] * 2 + [Outcome.HANDLED]
        rows = await service.activity_after(db, 0, staff=True)
        public = await service.activity_after(db, 0, staff=False)
    finally:
        await runner.close()
        await db.dispose()
    assert [(r.kind, r.params.get("name")) for r in rows] == [
        ("organisation.registered", "Nuova Bio S.r.l."),
        ("organisation.rejected", "?"),
        ("organisation.suspended", "Nuova Bio S.r.l."),
        ("figures.changed", None),
        ("deliverable.due_soon", None),
        ("organisation.rejoined", "Nuova Bio S.r.l."),
        ("organisation.lapsed", "Nuova Bio S.r.l."),
    ]
    assert [r.kind for r in public] == ["figures.changed", "organisation.rejoined"]
    assert rows[3].params["members"] == 3 and rows[3].params["figures"]["by_kind"] == {"company": 3}
    assert rows[4].params == {"number": "D1.1", "acronym": "ONCO", "days": 15, "project_id": "p-1"}
    assert [r.id for r in rows] == sorted(r.id for r in rows)
