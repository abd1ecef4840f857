"""The dates of a work plan from its project's dates (inside a caller's transaction): used when a
project's dates move and when a part of the plan is added or changed."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from projects.config import Settings
from projects.deadlines.models import DeliverableNotice
from projects.project.models import Project
from projects.tables import utcnow
from projects.unit import domain_rule
from projects.vocabulary import DeliverableStatus
from projects.workplan import domain
from projects.workplan.models import Deliverable, Milestone, ReportingPeriod


def check_month(project: Project, month: int, what: str) -> None:
    domain_rule(domain.check_month_in_project, month, project.start_date, project.end_date, what)


def due_date_of(project: Project, month: int) -> date | None:
    return domain.month_end(project.start_date, month) if project.start_date else None


async def reschedule(session: AsyncSession, settings: Settings, project: Project) -> None:
    """Recompute every date of the work plan after the project's dates moved."""
    for d in (await session.execute(select(Deliverable).where(Deliverable.project_id == project.id))).scalars():
        check_month(project, d.due_month, f"deliverable {d.number} due month")
        set_deliverable_due(session, settings, d, due_date_of(project, d.due_month))
    for m in (await session.execute(select(Milestone).where(Milestone.project_id == project.id))).scalars():
        check_month(project, m.due_month, f"milestone {m.number} due month")
        m.due_date = due_date_of(project, m.due_month)
    for r in (await session.execute(select(ReportingPeriod).where(ReportingPeriod.project_id == project.id))).scalars():
        check_month(project, r.end_month, f"reporting period {r.number} end month")
        set_period_dates(project, r)


def set_deliverable_due(session: AsyncSession, settings: Settings, d: Deliverable, due: date | None) -> None:
    """Move a deliverable's due date; its deadline notices start over for the new date."""
    if d.due_date == due:
        return
    d.due_date = due
    d.updated_at = utcnow()
    if d.id:
        session.info.setdefault("reset_notices", set()).add(d.id)
    if d.status == DeliverableStatus.LATE and due is not None and due >= settings.current_date():
        d.status = DeliverableStatus.PLANNED.value


async def flush_notice_resets(session: AsyncSession) -> None:
    ids = session.info.pop("reset_notices", set())
    if ids:
        await session.execute(delete(DeliverableNotice).where(DeliverableNotice.deliverable_id.in_(ids)))  # type: ignore[attr-defined]


def set_period_dates(project: Project, r: ReportingPeriod) -> None:
    if project.start_date is None:
        r.start_date = r.end_date = r.report_due_date = None
        return
    r.start_date = domain.month_start(project.start_date, r.start_month)
    r.end_date = domain.month_end(project.start_date, r.end_month)
    r.report_due_date = r.end_date + timedelta(days=domain.REPORT_DUE_DAYS)
