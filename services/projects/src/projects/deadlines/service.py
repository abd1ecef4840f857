"""Use case of the deadline engine: the scan."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from distretto_shared.contracts import projects as contracts
from distretto_shared.events import Event
from distretto_shared.outbox import add_event
from distretto_shared.web import NotFound
from projects import metrics
from projects.deadlines import domain
from projects.deadlines.models import DeadlineScanResult, DeliverableNotice
from projects.project.domain import FINAL_PROJECT_STATUSES
from projects.project.models import Project
from projects.project.repository import load_project
from projects.tables import utcnow
from projects.unit import Ctx
from projects.vocabulary import DeliverableStatus
from projects.workplan.models import Deliverable
from projects.workplan.service import load_part


async def scan_deadlines(ctx: Ctx, today: date | None = None) -> DeadlineScanResult:
    """Emit DeliverableDueSoon / DeliverableOverdue for every deliverable that crossed a threshold.

    Exactly once per (deliverable, threshold), across restarts and instances:
    each notice is a row under a unique constraint written in the same
    transaction as its outbox event. A concurrent scanner that loses the race
    hits the constraint, rolls back its own transaction (row *and* event) and
    moves on.
    """
    ctx.require_staff("run the deadline scan")
    today = today or ctx.settings.current_date()
    horizons = sorted({h for h in ctx.settings.due_soon_horizons if h >= 0})
    latest = today + timedelta(days=max(horizons, default=0))
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(Deliverable.id, col(Deliverable.due_date), Deliverable.status)
                .join(Project, col(Project.id) == Deliverable.project_id)
                .where(
                    Deliverable.status.in_([DeliverableStatus.PLANNED.value, DeliverableStatus.LATE.value]),  # type: ignore[attr-defined]
                    Deliverable.due_date.is_not(None),  # type: ignore[union-attr]
                    Deliverable.due_date <= latest,  # type: ignore[operator]
                    Project.status.not_in([s.value for s in FINAL_PROJECT_STATUSES]),  # type: ignore[attr-defined]
                )
            )
        ).all()
        done = {
            (r[0], r[1])
            for r in await session.execute(
                select(DeliverableNotice.deliverable_id, DeliverableNotice.threshold).where(
                    DeliverableNotice.deliverable_id.in_([r[0] for r in rows])  # type: ignore[attr-defined]
                )
            )
        }
    due_soon = overdue = 0
    for deliverable_id, due_date, status in rows:
        if due_date is None:  # excluded by the query; keeps the type checker honest
            continue
        notice = domain.deadline_notice(due_date, DeliverableStatus(status), today, horizons)
        if notice is None or (deliverable_id, notice.threshold) in done:
            continue
        if await _emit_notice(ctx, deliverable_id, notice, today):
            if notice.kind == "overdue":
                overdue += 1
            else:
                due_soon += 1
    return DeadlineScanResult(today=today, due_soon=due_soon, overdue=overdue)


async def _emit_notice(ctx: Ctx, deliverable_id: str, notice: domain.DeadlineNotice, today: date) -> bool:
    """One notice in its own transaction; False when another scanner (or a change) got there first."""
    try:
        async with ctx.db.transaction() as session:
            found = await session.get(Deliverable, deliverable_id)
            if found is None:
                return False
            # Locked, project first (the order of every unit of work): a submission at this moment
            # either commits before (and is seen here) or waits for this notice.
            try:
                d = await load_part(session, Deliverable, found.project_id, deliverable_id, "deliverable")
            except NotFound:
                return False  # deleted meanwhile
            if d.due_date is None:
                return False
            current = domain.deadline_notice(
                d.due_date, DeliverableStatus(d.status), today, ctx.settings.due_soon_horizons
            )
            if current is None or current.threshold != notice.threshold:
                return False  # submitted or rescheduled since the scan read it
            project = await load_project(session, d.project_id)
            fields = {
                "project_id": d.project_id,
                "deliverable_id": d.id,
                "number": d.number,
                "title": d.title,
                "due_date": d.due_date,
                "acronym": project.acronym,
            }
            event: Event
            if current.kind == "overdue":
                event = contracts.DeliverableOverdue(**fields, days_late=current.days)
                if d.status == DeliverableStatus.PLANNED:
                    d.status = DeliverableStatus.LATE.value
                    d.updated_at = utcnow()
            else:
                event = contracts.DeliverableDueSoon(
                    **fields, horizon_days=current.horizon_days or 0, days_left=current.days
                )
            record = DeliverableNotice(
                deliverable_id=d.id, threshold=current.threshold, due_date=d.due_date, event_id=""
            )
            session.add(record)
            await session.flush()  # the unique constraint speaks here, before the event is written
            record.event_id = add_event(session, event, source=ctx.source).event_id
    except IntegrityError:
        metrics.DEADLINE_NOTICES_RACED.inc()
        return False
    metrics.DEADLINE_NOTICES.labels(notice.kind).inc()
    return True
