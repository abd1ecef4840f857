"""Use cases of projects: register, change, read, list (one unit of work each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from distretto_shared.contracts import projects as contracts
from distretto_shared.conventions import paginate
from distretto_shared.web import Conflict, Invalid, Page, PageParams, make_page
from projects import metrics
from projects.config import Settings
from projects.consortium.models import Participant
from projects.project import domain
from projects.project.models import Project, ProjectCreate, ProjectPublic, ProjectUpdate
from projects.project.repository import (
    by_cordis_id,
    emit_updated,
    load_project,
    member_ids,
    members_of,
    project_page,
    project_public,
    summary,
)
from projects.tables import utcnow
from projects.unit import Ctx, emit, no_nulls, plain, unit_of_work
from projects.vocabulary import DomainRuleError, ProjectStatus
from projects.workplan.schedule import flush_notice_resets, reschedule


async def register_project(ctx: Ctx, data: ProjectCreate) -> ProjectPublic:
    """Register a project by hand; emits ProjectRegistered."""
    async with unit_of_work(ctx) as session:
        if data.cordis_id and await by_cordis_id(session, data.cordis_id):
            raise Conflict(f"a project with CORDIS id {data.cordis_id} is already registered")
        project = Project.model_validate(plain(data.model_dump()))
        session.add(project)
        await session.flush()
        emit(session, contracts.ProjectRegistered(project_id=project.id, project=await summary(session, project)))
        metrics.PROJECTS_REGISTERED.inc()
        return project_public(project, [])


async def apply_project_changes(
    session: AsyncSession, settings: Settings, project: Project, changes: dict[str, Any], *, authoritative: bool = False
) -> bool:
    """Apply changes to a project; returns whether anything changed. Emits Updated / StatusChanged.

    ``authoritative`` (a CORDIS import) takes the status as given instead of checking the transition.
    """
    changes = plain(changes)
    changes = {k: v for k, v in changes.items() if getattr(project, k) != v}
    if not changes:
        return False
    old_status = ProjectStatus(project.status)
    if "status" in changes and not authoritative:
        try:
            domain.check_project_transition(old_status, ProjectStatus(changes["status"]))
        except DomainRuleError as exc:
            raise Conflict(str(exc)) from exc
    start = changes.get("start_date", project.start_date)
    end = changes.get("end_date", project.end_date)
    if start and end and end < start:
        raise Invalid("end_date is before start_date")
    if changes.get("cordis_id"):
        other = await by_cordis_id(session, changes["cordis_id"])
        if other is not None and other.id != project.id:
            raise Conflict(f"a project with CORDIS id {changes['cordis_id']} is already registered")
    for key, value in changes.items():
        setattr(project, key, value)
    project.updated_at = utcnow()
    if "start_date" in changes or "end_date" in changes:
        await reschedule(session, settings, project)
        await flush_notice_resets(session)
    await emit_updated(session, project)
    if "status" in changes:
        emit(
            session,
            contracts.ProjectStatusChanged(
                project_id=project.id, old_status=old_status.value, new_status=project.status
            ),
        )
    return True


async def update_project(ctx: Ctx, project_id: str, data: ProjectUpdate) -> ProjectPublic:
    """Change a project; emits ProjectUpdated (and ProjectStatusChanged when the status moved)."""
    changes = data.model_dump(exclude_unset=True)
    no_nulls(changes, ("acronym", "title", "status", "foundation_role", "topics", "keywords", "thematic_areas"))
    changes = {k: ("" if v is None and k in ("objective", "notes") else v) for k, v in changes.items()}
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        await apply_project_changes(session, ctx.settings, project, changes)
        return project_public(project, await member_ids(session, project.id))


async def get_project(ctx: Ctx, project_id: str) -> ProjectPublic:
    """One project."""
    async with ctx.db.core_read() as conn:
        return await project_page(conn, project_id)


@dataclass(frozen=True)
class ProjectFilters:
    """Filters of the project list."""

    status: str | None = None
    framework_programme: str | None = None
    funding_scheme: str | None = None
    foundation_role: str | None = None
    thematic_area: str | None = None
    organisation_id: str | None = None
    q: str | None = None


async def list_projects(ctx: Ctx, filters: ProjectFilters, params: PageParams) -> Page[ProjectPublic]:
    """Projects matching the filters, newest start first."""
    stmt = select(Project)
    if filters.status:
        stmt = stmt.where(Project.status == filters.status)
    if filters.framework_programme:
        stmt = stmt.where(Project.framework_programme == filters.framework_programme)
    if filters.funding_scheme:
        stmt = stmt.where(Project.funding_scheme == filters.funding_scheme)
    if filters.foundation_role:
        stmt = stmt.where(Project.foundation_role == filters.foundation_role)
    if filters.organisation_id:
        stmt = stmt.where(
            Project.id.in_(  # type: ignore[attr-defined]
                select(Participant.project_id).where(Participant.organisation_id == filters.organisation_id)
            )
        )
    if filters.q:
        like = f"%{filters.q.lower()}%"
        stmt = stmt.where(
            or_(func.lower(Project.acronym).like(like), func.lower(Project.title).like(like))  # type: ignore[arg-type]
        )
    async with ctx.db.read() as session:
        if filters.thematic_area:
            # JSON list membership differs per database; the list is small, filter in Python.
            rows = (await session.execute(stmt.order_by(Project.acronym))).scalars().all()
            matching = [p for p in rows if filters.thematic_area in p.thematic_areas]
            total = len(matching)
            projects = matching[params.offset : params.offset + params.limit]
        else:
            page = await paginate(session, stmt, params, order_by=(Project.acronym, Project.id))
            projects, total = page.items, page.total
        members = await members_of(session, [p.id for p in projects])
        return make_page([project_public(p, members.get(p.id, [])) for p in projects], total, params)
