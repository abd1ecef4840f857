"""Use cases of the work plan: work packages, deliverables, milestones, reporting periods."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col, select

from distretto_shared.context import NotAllowed
from distretto_shared.contracts import projects as contracts
from distretto_shared.conventions import paginate
from distretto_shared.db import load
from distretto_shared.web import Conflict, Invalid, NotFound, Page, PageParams
from projects.consortium.models import Participant
from projects.deadlines.models import DeliverableNotice
from projects.project.models import Project
from projects.project.repository import load_project
from projects.tables import utcnow
from projects.unit import Ctx, emit, no_nulls, plain, unit_of_work
from projects.vocabulary import DeliverableStatus, DomainRuleError, MilestoneStatus
from projects.workplan import domain
from projects.workplan.models import (
    Deliverable,
    DeliverableCreate,
    DeliverablePublic,
    DeliverableUpdate,
    Milestone,
    MilestoneCreate,
    MilestonePublic,
    MilestoneUpdate,
    ReportingPeriod,
    ReportingPeriodCreate,
    ReportingPeriodPublic,
    ReportingPeriodUpdate,
    WorkPackage,
    WorkPackageCreate,
    WorkPackagePublic,
    WorkPackageUpdate,
)
from projects.workplan.schedule import (
    check_month,
    due_date_of,
    flush_notice_resets,
    set_deliverable_due,
    set_period_dates,
)

T = TypeVar("T", bound=SQLModel)


# Who may see what (docs/service-guide.md, "Authorisation"): projects, consortia, member
# organisations and the portfolio are public CORDIS data (every signed-in caller); a project's
# work plan (work packages, deliverables, milestones, reporting periods) is for the members of
# its consortium and staff — 403 for everyone else (the project is public, its work plan is not).


def consortia_of(organisation_id: str | None) -> Any:
    """SQL: the ids of the projects ``organisation_id`` takes part in."""
    return select(Participant.project_id).where(Participant.organisation_id == organisation_id)


async def readable_work_plan(ctx: Ctx, session: AsyncSession, project_id: str) -> Project:
    """The project, when the caller may read its work plan (404 no project, 403 not in its consortium)."""
    project = await load_project(session, project_id)
    if ctx.sees_everything:
        return project
    own = ctx.own_organisation()
    if own is not None:
        member = await session.execute(
            select(Participant.id).where(Participant.project_id == project_id, Participant.organisation_id == own)
        )
        if member.first() is not None:
            return project
    raise NotAllowed("Only the members of this project's consortium and the foundation's staff may read its work plan")


async def load_part(session: AsyncSession, model: type[T], project_id: str, part_id: str, what: str) -> T:
    # The project first, then the part: every unit of work takes the row locks in that order.
    await load_project(session, project_id)
    row = await load(session, model, part_id)
    if row is None or row.project_id != project_id:  # type: ignore[attr-defined]
        raise NotFound(f"{what} {part_id} not found in project {project_id}")
    return row


async def _check_wp_exists(session: AsyncSession, project_id: str, number: int | None) -> None:
    if number is None:
        return
    found = await session.execute(
        select(WorkPackage.id).where(WorkPackage.project_id == project_id, WorkPackage.number == number)
    )
    if not found.first():
        raise Invalid(f"work package WP{number} does not exist in this project")


async def _check_lead(session: AsyncSession, project_id: str, participant_id: str | None) -> None:
    if participant_id is None:
        return
    p = await session.get(Participant, participant_id)
    if p is None or p.project_id != project_id:
        raise Invalid(f"lead participant {participant_id} is not a participant of this project")


async def add_work_package(ctx: Ctx, project_id: str, data: WorkPackageCreate) -> WorkPackagePublic:
    """Add a work package."""
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        check_month(project, data.end_month, "end_month")
        await _check_lead(session, project_id, data.lead_participant_id)
        if (
            await session.execute(
                select(WorkPackage.id).where(WorkPackage.project_id == project_id, WorkPackage.number == data.number)
            )
        ).first():
            raise Conflict(f"WP{data.number} already exists in this project")
        wp = WorkPackage.model_validate({**data.model_dump(), "project_id": project_id})
        session.add(wp)
        await session.flush()
        return WorkPackagePublic.model_validate(wp.model_dump())


async def update_work_package(ctx: Ctx, project_id: str, wp_id: str, data: WorkPackageUpdate) -> WorkPackagePublic:
    """Change a work package."""
    changes = data.model_dump(exclude_unset=True)
    no_nulls(changes, ("title", "start_month", "end_month"))
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        wp = await load_part(session, WorkPackage, project_id, wp_id, "work package")
        for key, value in changes.items():
            setattr(wp, key, value)
        if wp.end_month < wp.start_month:
            raise Invalid("end_month is before start_month")
        check_month(project, wp.end_month, "end_month")
        await _check_lead(session, project_id, wp.lead_participant_id)
        await session.flush()
        return WorkPackagePublic.model_validate(wp.model_dump())


async def delete_work_package(ctx: Ctx, project_id: str, wp_id: str) -> None:
    """Remove a work package that no deliverable or milestone refers to."""
    async with unit_of_work(ctx) as session:
        wp = await load_part(session, WorkPackage, project_id, wp_id, "work package")
        for model in (Deliverable, Milestone):
            used = await session.execute(
                select(model.id).where(model.project_id == project_id, model.work_package == wp.number)  # type: ignore[attr-defined]
            )
            if used.first():
                raise Conflict(f"WP{wp.number} still has deliverables or milestones")
        await session.delete(wp)


async def list_work_packages(ctx: Ctx, project_id: str, params: PageParams) -> Page[WorkPackagePublic]:
    """A project's work packages by number."""
    async with ctx.db.read() as session:
        await readable_work_plan(ctx, session, project_id)
        return await paginate(
            session,
            select(WorkPackage).where(WorkPackage.project_id == project_id),
            params,
            order_by=(WorkPackage.number,),
            map=lambda r: WorkPackagePublic.model_validate(r.model_dump()),
        )


async def get_work_package(ctx: Ctx, project_id: str, wp_id: str) -> WorkPackagePublic:
    """One work package."""
    async with ctx.db.read() as session:
        await readable_work_plan(ctx, session, project_id)
        wp = await load_part(session, WorkPackage, project_id, wp_id, "work package")
        return WorkPackagePublic.model_validate(wp.model_dump())


async def add_deliverable(ctx: Ctx, project_id: str, data: DeliverableCreate) -> DeliverablePublic:
    """Add a deliverable; its due date is the end of its due month."""
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        check_month(project, data.due_month, "due_month")
        await _check_wp_exists(session, project_id, data.work_package)
        if (
            await session.execute(
                select(Deliverable.id).where(Deliverable.project_id == project_id, Deliverable.number == data.number)
            )
        ).first():
            raise Conflict(f"deliverable {data.number} already exists in this project")
        d = Deliverable.model_validate(
            {**plain(data.model_dump()), "project_id": project_id, "due_date": due_date_of(project, data.due_month)}
        )
        session.add(d)
        await session.flush()
        return DeliverablePublic.model_validate(d.model_dump())


async def update_deliverable(
    ctx: Ctx, project_id: str, deliverable_id: str, data: DeliverableUpdate
) -> DeliverablePublic:
    """Change a deliverable's plan; a new due month resets its deadline notices."""
    changes = plain(data.model_dump(exclude_unset=True))
    no_nulls(changes, ("title", "type", "dissemination", "due_month"))
    changes = {k: ("" if v is None and k == "description" else v) for k, v in changes.items()}
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        d = await load_part(session, Deliverable, project_id, deliverable_id, "deliverable")
        if "due_month" in changes:
            check_month(project, changes["due_month"], "due_month")
        if "work_package" in changes:
            await _check_wp_exists(session, project_id, changes["work_package"])
        for key, value in changes.items():
            setattr(d, key, value)
        d.updated_at = utcnow()
        set_deliverable_due(session, ctx.settings, d, due_date_of(project, d.due_month))
        await flush_notice_resets(session)
        await session.flush()
        return DeliverablePublic.model_validate(d.model_dump())


async def delete_deliverable(ctx: Ctx, project_id: str, deliverable_id: str) -> None:
    """Remove a deliverable (and its deadline notices)."""
    async with unit_of_work(ctx) as session:
        d = await load_part(session, Deliverable, project_id, deliverable_id, "deliverable")
        await session.execute(delete(DeliverableNotice).where(DeliverableNotice.deliverable_id == d.id))  # type: ignore[arg-type]
        await session.delete(d)


async def get_deliverable(ctx: Ctx, project_id: str, deliverable_id: str) -> DeliverablePublic:
    """One deliverable."""
    async with ctx.db.read() as session:
        await readable_work_plan(ctx, session, project_id)
        d = await load_part(session, Deliverable, project_id, deliverable_id, "deliverable")
        return DeliverablePublic.model_validate(d.model_dump())


@dataclass(frozen=True)
class DeliverableFilters:
    """Filters of deliverable lists."""

    project_id: str | None = None
    status: str | None = None
    work_package: int | None = None
    due_before: date | None = None
    due_after: date | None = None


async def list_deliverables(ctx: Ctx, filters: DeliverableFilters, params: PageParams) -> Page[DeliverablePublic]:
    """Deliverables (of one project or all), soonest due first."""
    stmt = select(Deliverable)
    if filters.project_id:
        stmt = stmt.where(Deliverable.project_id == filters.project_id)
    if filters.status:
        stmt = stmt.where(Deliverable.status == filters.status)
    if filters.work_package is not None:
        stmt = stmt.where(Deliverable.work_package == filters.work_package)
    if filters.due_before:
        stmt = stmt.where(Deliverable.due_date <= filters.due_before)  # type: ignore[operator]
    if filters.due_after:
        stmt = stmt.where(Deliverable.due_date >= filters.due_after)  # type: ignore[operator]
    if not ctx.sees_everything:
        ctx.require_member_or_staff("read work plans")
        stmt = stmt.where(col(Deliverable.project_id).in_(consortia_of(ctx.own_organisation())))
    async with ctx.db.read() as session:
        if filters.project_id:
            await readable_work_plan(ctx, session, filters.project_id)
        return await paginate(
            session,
            stmt,
            params,
            order_by=(Deliverable.due_date, Deliverable.number, Deliverable.id),
            map=lambda r: DeliverablePublic.model_validate(r.model_dump()),
        )


async def _deliverable_event_fields(session: AsyncSession, d: Deliverable) -> dict[str, Any]:
    project = await load_project(session, d.project_id)
    if d.due_date is None:
        raise Invalid("the project has no start date, so this deliverable has no due date yet")
    return {
        "project_id": d.project_id,
        "deliverable_id": d.id,
        "number": d.number,
        "title": d.title,
        "due_date": d.due_date,
        "acronym": project.acronym,
    }


async def submit_deliverable(ctx: Ctx, project_id: str, deliverable_id: str, on: date | None) -> DeliverablePublic:
    """Record a deliverable as submitted; emits DeliverableSubmitted."""
    async with unit_of_work(ctx) as session:
        d = await load_part(session, Deliverable, project_id, deliverable_id, "deliverable")
        try:
            domain.check_deliverable_transition(DeliverableStatus(d.status), DeliverableStatus.SUBMITTED)
        except DomainRuleError as exc:
            raise Conflict(str(exc)) from exc
        fields = await _deliverable_event_fields(session, d)
        d.status = DeliverableStatus.SUBMITTED.value
        d.submitted_on = on or ctx.settings.current_date()
        d.updated_at = utcnow()
        emit(session, contracts.DeliverableSubmitted(**fields, submitted_on=d.submitted_on))
        return DeliverablePublic.model_validate(d.model_dump())


async def accept_deliverable(ctx: Ctx, project_id: str, deliverable_id: str, on: date | None) -> DeliverablePublic:
    """Record the Commission's acceptance of a submitted deliverable."""
    async with unit_of_work(ctx) as session:
        d = await load_part(session, Deliverable, project_id, deliverable_id, "deliverable")
        try:
            domain.check_deliverable_transition(DeliverableStatus(d.status), DeliverableStatus.ACCEPTED)
        except DomainRuleError as exc:
            raise Conflict(str(exc)) from exc
        accepted = on or ctx.settings.current_date()
        if d.submitted_on and accepted < d.submitted_on:
            raise Invalid("accepted_on is before the submission date")
        d.status = DeliverableStatus.ACCEPTED.value
        d.accepted_on = accepted
        d.updated_at = utcnow()
        return DeliverablePublic.model_validate(d.model_dump())


async def add_milestone(ctx: Ctx, project_id: str, data: MilestoneCreate) -> MilestonePublic:
    """Add a milestone."""
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        check_month(project, data.due_month, "due_month")
        await _check_wp_exists(session, project_id, data.work_package)
        if (
            await session.execute(
                select(Milestone.id).where(Milestone.project_id == project_id, Milestone.number == data.number)
            )
        ).first():
            raise Conflict(f"milestone {data.number} already exists in this project")
        m = Milestone.model_validate(
            {**data.model_dump(), "project_id": project_id, "due_date": due_date_of(project, data.due_month)}
        )
        session.add(m)
        await session.flush()
        return MilestonePublic.model_validate(m.model_dump())


async def update_milestone(ctx: Ctx, project_id: str, milestone_id: str, data: MilestoneUpdate) -> MilestonePublic:
    """Change a milestone's plan."""
    changes = data.model_dump(exclude_unset=True)
    no_nulls(changes, ("title", "due_month", "means_of_verification"))
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        m = await load_part(session, Milestone, project_id, milestone_id, "milestone")
        if "due_month" in changes:
            check_month(project, changes["due_month"], "due_month")
        if "work_package" in changes:
            await _check_wp_exists(session, project_id, changes["work_package"])
        for key, value in changes.items():
            setattr(m, key, value)
        m.due_date = due_date_of(project, m.due_month)
        await session.flush()
        return MilestonePublic.model_validate(m.model_dump())


async def reach_milestone(ctx: Ctx, project_id: str, milestone_id: str, on: date | None) -> MilestonePublic:
    """Record a milestone as reached; emits MilestoneReached."""
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        m = await load_part(session, Milestone, project_id, milestone_id, "milestone")
        if m.status == MilestoneStatus.REACHED:
            raise Conflict(f"milestone {m.number} was already reached on {m.reached_on}")
        m.status = MilestoneStatus.REACHED.value
        m.reached_on = on or ctx.settings.current_date()
        emit(
            session,
            contracts.MilestoneReached(
                project_id=project_id,
                milestone_id=m.id,
                number=m.number,
                title=m.title,
                reached_on=m.reached_on,
                acronym=project.acronym,
            ),
        )
        return MilestonePublic.model_validate(m.model_dump())


async def delete_milestone(ctx: Ctx, project_id: str, milestone_id: str) -> None:
    """Remove a milestone."""
    async with unit_of_work(ctx) as session:
        await session.delete(await load_part(session, Milestone, project_id, milestone_id, "milestone"))


async def get_milestone(ctx: Ctx, project_id: str, milestone_id: str) -> MilestonePublic:
    """One milestone."""
    async with ctx.db.read() as session:
        await readable_work_plan(ctx, session, project_id)
        return MilestonePublic.model_validate(
            (await load_part(session, Milestone, project_id, milestone_id, "milestone")).model_dump()
        )


async def list_milestones(ctx: Ctx, project_id: str, params: PageParams) -> Page[MilestonePublic]:
    """A project's milestones by due month."""
    async with ctx.db.read() as session:
        await readable_work_plan(ctx, session, project_id)
        return await paginate(
            session,
            select(Milestone).where(Milestone.project_id == project_id),
            params,
            order_by=(Milestone.due_month, Milestone.number),
            map=lambda r: MilestonePublic.model_validate(r.model_dump()),
        )


async def _check_period_overlap(session: AsyncSession, r: ReportingPeriod) -> None:
    others = (
        await session.execute(
            select(ReportingPeriod).where(ReportingPeriod.project_id == r.project_id, ReportingPeriod.id != r.id)
        )
    ).scalars()
    for o in others:
        if r.start_month <= o.end_month and o.start_month <= r.end_month:
            raise Invalid(f"months M{r.start_month}–M{r.end_month} overlap reporting period {o.number}")


async def add_reporting_period(ctx: Ctx, project_id: str, data: ReportingPeriodCreate) -> ReportingPeriodPublic:
    """Add a reporting period (periods may not overlap)."""
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        check_month(project, data.end_month, "end_month")
        if (
            await session.execute(
                select(ReportingPeriod.id).where(
                    ReportingPeriod.project_id == project_id, ReportingPeriod.number == data.number
                )
            )
        ).first():
            raise Conflict(f"reporting period {data.number} already exists in this project")
        r = ReportingPeriod.model_validate({**data.model_dump(), "project_id": project_id})
        await _check_period_overlap(session, r)
        set_period_dates(project, r)
        session.add(r)
        await session.flush()
        return ReportingPeriodPublic.model_validate(r.model_dump())


async def update_reporting_period(
    ctx: Ctx, project_id: str, period_id: str, data: ReportingPeriodUpdate
) -> ReportingPeriodPublic:
    """Change a reporting period's months."""
    changes = data.model_dump(exclude_unset=True)
    no_nulls(changes, ("start_month", "end_month"))
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        r = await load_part(session, ReportingPeriod, project_id, period_id, "reporting period")
        for key, value in changes.items():
            setattr(r, key, value)
        if r.end_month < r.start_month:
            raise Invalid("end_month is before start_month")
        check_month(project, r.end_month, "end_month")
        await _check_period_overlap(session, r)
        set_period_dates(project, r)
        await session.flush()
        return ReportingPeriodPublic.model_validate(r.model_dump())


async def delete_reporting_period(ctx: Ctx, project_id: str, period_id: str) -> None:
    """Remove a reporting period."""
    async with unit_of_work(ctx) as session:
        await session.delete(await load_part(session, ReportingPeriod, project_id, period_id, "reporting period"))


async def list_reporting_periods(ctx: Ctx, project_id: str, params: PageParams) -> Page[ReportingPeriodPublic]:
    """A project's reporting periods in order."""
    async with ctx.db.read() as session:
        await readable_work_plan(ctx, session, project_id)
        return await paginate(
            session,
            select(ReportingPeriod).where(ReportingPeriod.project_id == project_id),
            params,
            order_by=(ReportingPeriod.number,),
            map=lambda r: ReportingPeriodPublic.model_validate(r.model_dump()),
        )
