"""The deadline engine over the real broker: each notice exactly once, across a restart and two instances."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from typing import Any

from sqlalchemy import func, select

from distretto_dev.testing import DatabaseTarget, headers_of, read_topic, service_client, wait_for
from distretto_shared.contracts import projects as contracts
from distretto_shared.conventions import hex_id
from distretto_shared.events import decode
from distretto_shared.outbox import OutboxMessage
from projects.app import create_app

from .conftest import ProjectsService, make_settings

DEADLINE_TYPES = {contracts.DeliverableDueSoon.event_type, contracts.DeliverableOverdue.event_type}


async def drained(svc: ProjectsService) -> bool:
    async with svc.ctx.db.read() as session:
        pending = (
            await session.execute(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))  # type: ignore[union-attr]
            )
        ).scalar_one()
    return pending == 0


async def deadline_events(kafka_bootstrap: str, topic: str, min_count: int) -> list[tuple[Any, dict[str, str]]]:
    records = await read_topic(kafka_bootstrap, topic, min_count=min_count, timeout=20)
    out = []
    for record in records:
        headers = headers_of(record)
        if headers["ce_type"] in DEADLINE_TYPES:
            out.append((decode(headers, record.value)[1], headers))
    return out


async def scan(svc: ProjectsService, today: str) -> dict[str, Any]:
    return dict(await svc.call("POST", "/deadlines/scan", params={"today": today}))


async def test_deadline_events_fire_once_across_restart_and_concurrent_instances(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = make_settings(database, kafka_bootstrap, due_soon_horizons=[30, 7])
    topic = topic_prefix + contracts.PROJECT_TOPIC.name

    app = create_app(settings)
    async with service_client(app) as client:
        svc = ProjectsService(client, app.state.ctx)
        project = await svc.project(acronym="DEADLINES", start_date="2025-01-01", end_date="2027-12-31")
        base = f"/projects/{project['id']}/deliverables"
        d11 = await svc.post(base, {"number": "D1.1", "title": "Data management plan", "type": "DMP", "due_month": 6})
        d12 = await svc.post(base, {"number": "D1.2", "title": "Website", "type": "DEC", "due_month": 7})
        d21 = await svc.post(base, {"number": "D2.1", "title": "Ethics", "type": "ETHICS", "due_month": 3})
        done = await svc.post(base, {"number": "D2.2", "title": "Submitted early", "due_month": 6})
        await svc.call("POST", f"{base}/{done['id']}/submit", {"submitted_on": "2025-05-01"})
        assert (d11["due_date"], d12["due_date"], d21["due_date"]) == ("2025-06-30", "2025-07-31", "2025-03-31")

        assert await scan(svc, "2025-06-05") == {"today": "2025-06-05", "due_soon": 1, "overdue": 1}
        assert await scan(svc, "2025-06-05") == {"today": "2025-06-05", "due_soon": 0, "overdue": 0}
        assert (await svc.get(f"{base}/{d21['id']}"))["status"] == "late"
        await wait_for(lambda: drained(svc), what="first app's outbox published")

    # A restart: a new app on the same database scans the same day again and says nothing.
    app = create_app(settings)
    async with service_client(app) as client:
        svc = ProjectsService(client, app.state.ctx)
        assert await scan(svc, "2025-06-05") == {"today": "2025-06-05", "due_soon": 0, "overdue": 0}

    # Two instances on the same database scan concurrently, twice.
    app1, app2 = create_app(settings), create_app(settings)
    async with service_client(app1) as c1, service_client(app2) as c2:
        s1, s2 = ProjectsService(c1, app1.state.ctx), ProjectsService(c2, app2.state.ctx)
        totals: Counter[str] = Counter()
        for today in ("2025-06-25", "2025-07-05", "2025-07-05"):
            results = await asyncio.gather(*(scan(s, today) for s in (s1, s2, s1, s2)))
            for r in results:
                totals.update({"due_soon": r["due_soon"], "overdue": r["overdue"]})
        # 25 June: D1.1 due in 5 days → 7-day notice; 5 July: D1.1 overdue, D1.2 in 26 days → 30-day notice.
        assert totals == Counter({"due_soon": 2, "overdue": 1})
        await wait_for(lambda: drained(s1), what="outbox published")

    # 7 records: ProjectRegistered, DeliverableSubmitted and the five notices.
    events = await deadline_events(kafka_bootstrap, topic, min_count=7)
    seen = Counter(
        (e.number, type(e).__name__, getattr(e, "horizon_days", None))
        for e, _ in events  # type: ignore[attr-defined]
    )
    assert seen == Counter(
        {
            ("D1.1", "DeliverableDueSoon", 30): 1,
            ("D2.1", "DeliverableOverdue", None): 1,
            ("D1.1", "DeliverableDueSoon", 7): 1,
            ("D1.1", "DeliverableOverdue", None): 1,
            ("D1.2", "DeliverableDueSoon", 30): 1,
        }
    )
    for event, headers in events:
        assert headers["ce_source"] == "/distretto/projects"
        # events carry the stored (32-hex) form of the id the API answers dashed
        assert headers["ce_subject"] == hex_id(project["id"]) == event.project_id  # type: ignore[attr-defined]
        assert event.acronym == "DEADLINES"  # type: ignore[attr-defined]
    overdue_d21 = next(e for e, _ in events if e.number == "D2.1")  # type: ignore[attr-defined]
    assert overdue_d21.days_late == 66  # type: ignore[attr-defined]  # 31 March → 5 June


async def test_moving_a_deliverable_resets_its_notices_and_submitting_stops_them(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # The service's clock says 10 July 2025 (the setting a test or a demo uses instead of sleeping).
    app = create_app(make_settings(database, kafka_bootstrap, today=date(2025, 7, 10)))
    async with service_client(app) as client:
        await _moving_and_submitting(ProjectsService(client, app.state.ctx))


async def _moving_and_submitting(svc: ProjectsService) -> None:
    project = await svc.project(start_date="2025-01-01", end_date="2027-12-31")
    base = f"/projects/{project['id']}/deliverables"
    d = await svc.post(base, {"number": "D3.1", "title": "Pilot report", "due_month": 6})
    assert (await svc.call("POST", "/deadlines/scan"))["overdue"] == 1  # as of the service's clock
    assert (await svc.get(f"{base}/{d['id']}"))["status"] == "late"
    # Amendment: due in M9 now — no longer late, and its notices start over for the new date.
    moved = await svc.call("PATCH", f"{base}/{d['id']}", {"due_month": 9})
    assert (moved["due_date"], moved["status"]) == ("2025-09-30", "planned")
    assert (await scan(svc, "2025-09-05"))["due_soon"] == 1
    await svc.call("POST", f"{base}/{d['id']}/submit", {"submitted_on": "2025-09-20"})
    assert await scan(svc, "2025-10-15") == {"today": "2025-10-15", "due_soon": 0, "overdue": 0}
    types = await svc.outbox_types()
    assert types.count(contracts.DeliverableOverdue.event_type) == 1
    assert types.count(contracts.DeliverableDueSoon.event_type) == 1
    assert types.count(contracts.DeliverableSubmitted.event_type) == 1
