"""Use cases of the projects service: one unit of work each.

Each use case loads, applies a rule of ``domain.py``, saves and adds its
outbox events in one transaction. Routes and consumers call these and
nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import delete, func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col, select

from distretto_shared.context import Context, NotAllowed
from distretto_shared.contracts import projects as contracts
from distretto_shared.contracts.membership import OrganisationProfile
from distretto_shared.events import Event
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, Invalid, NotFound, Page, PageParams, make_page
from projects import cordis, domain, metrics
from projects.config import Settings
from projects.domain import DeliverableStatus, DomainRuleError, MilestoneStatus, ProjectStatus
from projects.models import (
    BucketPublic,
    CordisImportResult,
    DeadlineScanResult,
    Deliverable,
    DeliverableCreate,
    DeliverableNotice,
    DeliverablePublic,
    DeliverableUpdate,
    MemberOrganisation,
    MemberOrganisationPublic,
    Milestone,
    MilestoneCreate,
    MilestonePublic,
    MilestoneUpdate,
    Participant,
    ParticipantCreate,
    ParticipantPublic,
    ParticipantUpdate,
    PortfolioPublic,
    Project,
    ProjectCreate,
    ProjectPublic,
    ProjectUpdate,
    ReportingPeriod,
    ReportingPeriodCreate,
    ReportingPeriodPublic,
    ReportingPeriodUpdate,
    WorkPackage,
    WorkPackageCreate,
    WorkPackagePublic,
    WorkPackageUpdate,
    utcnow,
)

SOURCE = "/distretto/projects"
UNLINKABLE_STATUSES = frozenset({"rejected", "left"})
"""Organisations in these states are no longer matched to participants."""

T = TypeVar("T", bound=SQLModel)


Ctx = Context[Settings]
"""What every use case receives: the caller, the database, the settings (docs/service-guide.md)."""


@contextlib.asynccontextmanager
async def _unit(ctx: Ctx) -> AsyncIterator[AsyncSession]:
    """A transaction whose unique-constraint clashes become a 409; staff only (every change of a
    project, its consortium or its work plan is the foundation's work)."""
    ctx.require_staff("change projects, consortia or work plans")
    try:
        async with ctx.db.transaction() as session:
            yield session
    except IntegrityError as exc:
        raise Conflict("this clashes with an existing record (duplicate number or id)") from exc


def _emit(session: AsyncSession, event: Event, source: str = SOURCE) -> None:
    add_event(session, event, source=source)


def _rule(fn: Any, *args: Any) -> Any:
    """Run a domain rule; its refusal becomes a 422."""
    try:
        return fn(*args)
    except DomainRuleError as exc:
        raise Invalid(str(exc)) from exc


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """Enum members as their values (the tables store plain strings)."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in data.items()}


def _no_nulls(changes: dict[str, Any], fields: Iterable[str]) -> None:
    nulls = [f for f in fields if f in changes and changes[f] is None]
    if nulls:
        raise Invalid(f"{', '.join(nulls)} cannot be null")


async def _page(session: AsyncSession, stmt: Any, params: PageParams, order: Sequence[Any]) -> tuple[list[Any], int]:
    total = (await session.execute(select(func.count()).select_from(stmt.order_by(None).subquery()))).scalar_one()
    rows = (await session.execute(stmt.order_by(*order).limit(params.limit).offset(params.offset))).scalars().all()
    return list(rows), int(total)


# -- projects ----------------------------------------------------------------


async def _project(session: AsyncSession, project_id: str) -> Project:
    project = await session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} not found")
    return project


# Who may see what (docs/service-guide.md, "Authorisation"): projects, consortia, member
# organisations and the portfolio are public CORDIS data (every signed-in caller); a project's
# work plan (work packages, deliverables, milestones, reporting periods) is for the members of
# its consortium and staff — 403 for everyone else (the project is public, its work plan is not).


def _consortia_of(organisation_id: str | None) -> Any:
    """SQL: the ids of the projects ``organisation_id`` takes part in."""
    return select(Participant.project_id).where(Participant.organisation_id == organisation_id)


async def _work_plan(ctx: Ctx, session: AsyncSession, project_id: str) -> Project:
    """The project, when the caller may read its work plan (404 no project, 403 not in its consortium)."""
    project = await _project(session, project_id)
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


async def _member_ids(session: AsyncSession, project_id: str) -> list[str]:
    rows = await session.execute(
        select(Participant.organisation_id)
        .where(Participant.project_id == project_id, Participant.organisation_id.is_not(None))  # type: ignore[union-attr]
        .distinct()
    )
    return sorted(r[0] for r in rows)


async def _summary(session: AsyncSession, project: Project) -> contracts.ProjectSummary:
    return contracts.ProjectSummary(
        project_id=project.id,
        acronym=project.acronym,
        title=project.title,
        status=project.status,
        framework_programme=project.framework_programme,
        funding_scheme=project.funding_scheme,
        topics=list(project.topics),
        objective=project.objective,
        keywords=list(project.keywords),
        start_date=project.start_date,
        end_date=project.end_date,
        foundation_role=project.foundation_role,
        thematic_areas=list(project.thematic_areas),
        member_organisation_ids=await _member_ids(session, project.id),
    )


def _public(project: Project, member_ids: list[str]) -> ProjectPublic:
    return ProjectPublic.model_validate({**project.model_dump(), "member_organisation_ids": member_ids})


async def _emit_updated(session: AsyncSession, project: Project) -> None:
    await session.flush()
    _emit(session, contracts.ProjectUpdated(project_id=project.id, project=await _summary(session, project)))


async def register_project(ctx: Ctx, data: ProjectCreate) -> ProjectPublic:
    """Register a project by hand; emits ProjectRegistered."""
    async with _unit(ctx) as session:
        if data.cordis_id and await _by_cordis_id(session, data.cordis_id):
            raise Conflict(f"a project with CORDIS id {data.cordis_id} is already registered")
        project = Project.model_validate(_plain(data.model_dump()))
        session.add(project)
        await session.flush()
        _emit(session, contracts.ProjectRegistered(project_id=project.id, project=await _summary(session, project)))
        metrics.PROJECTS_REGISTERED.inc()
        return _public(project, [])


async def _by_cordis_id(session: AsyncSession, cordis_id: str) -> Project | None:
    return (await session.execute(select(Project).where(Project.cordis_id == cordis_id))).scalar_one_or_none()


async def _apply_project_changes(
    session: AsyncSession, settings: Settings, project: Project, changes: dict[str, Any], *, authoritative: bool = False
) -> bool:
    """Apply changes to a project; returns whether anything changed. Emits Updated / StatusChanged.

    ``authoritative`` (a CORDIS import) takes the status as given instead of checking the transition.
    """
    changes = _plain(changes)
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
        other = await _by_cordis_id(session, changes["cordis_id"])
        if other is not None and other.id != project.id:
            raise Conflict(f"a project with CORDIS id {changes['cordis_id']} is already registered")
    for key, value in changes.items():
        setattr(project, key, value)
    project.updated_at = utcnow()
    if "start_date" in changes or "end_date" in changes:
        await _reschedule(session, settings, project)
        await _flush_notice_resets(session)
    await _emit_updated(session, project)
    if "status" in changes:
        _emit(
            session,
            contracts.ProjectStatusChanged(
                project_id=project.id, old_status=old_status.value, new_status=project.status
            ),
        )
    return True


async def update_project(ctx: Ctx, project_id: str, data: ProjectUpdate) -> ProjectPublic:
    """Change a project; emits ProjectUpdated (and ProjectStatusChanged when the status moved)."""
    changes = data.model_dump(exclude_unset=True)
    _no_nulls(changes, ("acronym", "title", "status", "foundation_role", "topics", "keywords", "thematic_areas"))
    changes = {k: ("" if v is None and k in ("objective", "notes") else v) for k, v in changes.items()}
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        await _apply_project_changes(session, ctx.settings, project, changes)
        return _public(project, await _member_ids(session, project.id))


async def get_project(ctx: Ctx, project_id: str) -> ProjectPublic:
    """One project."""
    async with ctx.db.read() as session:
        project = await _project(session, project_id)
        return _public(project, await _member_ids(session, project.id))


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
            projects, total = await _page(session, stmt, params, (Project.acronym, Project.id))
        members = await _members_of(session, [p.id for p in projects])
        return make_page([_public(p, members.get(p.id, [])) for p in projects], total, params)


async def _members_of(session: AsyncSession, project_ids: list[str]) -> dict[str, list[str]]:
    if not project_ids:
        return {}
    rows = await session.execute(
        select(Participant.project_id, Participant.organisation_id)
        .where(Participant.project_id.in_(project_ids), Participant.organisation_id.is_not(None))  # type: ignore[attr-defined,union-attr]
        .distinct()
    )
    out: dict[str, list[str]] = {}
    for pid, oid in rows:
        out.setdefault(pid, []).append(oid)
    return {k: sorted(v) for k, v in out.items()}


# -- consortium and linking ----------------------------------------------------


def _foundation(settings: Settings, name_key: str, vat_key: str | None) -> bool:
    if vat_key and vat_key in {domain.normalise_vat(v) for v in settings.foundation_vat_numbers}:
        return True
    return name_key in {domain.normalise_name(n) for n in settings.foundation_names}


async def _find_member(session: AsyncSession, vat_key: str | None, name_key: str) -> MemberOrganisation | None:
    """The member organisation a participant is: by VAT number first, then by normalised name."""
    linkable = MemberOrganisation.status.not_in(UNLINKABLE_STATUSES)  # type: ignore[attr-defined]
    if vat_key:
        found = (
            (
                await session.execute(
                    select(MemberOrganisation)
                    .where(MemberOrganisation.vat_key == vat_key, linkable)
                    .order_by(MemberOrganisation.organisation_id)
                )
            )
            .scalars()
            .first()
        )
        if found:
            return found
    if not name_key:
        return None
    return (
        (
            await session.execute(
                select(MemberOrganisation)
                .where(MemberOrganisation.name_key == name_key, linkable)
                .order_by(MemberOrganisation.organisation_id)
            )
        )
        .scalars()
        .first()
    )


def _link(session: AsyncSession, participant: Participant, project: Project, organisation_id: str) -> None:
    participant.organisation_id = organisation_id
    participant.updated_at = utcnow()
    _emit(
        session,
        contracts.ParticipantLinked(
            project_id=project.id, participant_id=participant.id, organisation_id=organisation_id
        ),
    )
    metrics.PARTICIPANTS_LINKED.inc()


def _participant_keys(settings: Settings, participant: Participant) -> None:
    participant.name_key = domain.normalise_name(participant.name)
    participant.vat_key = domain.normalise_vat(participant.vat_number)
    participant.is_foundation = _foundation(settings, participant.name_key, participant.vat_key)


async def _add_participant(
    session: AsyncSession, settings: Settings, project: Project, data: ParticipantCreate
) -> tuple[Participant, bool]:
    """Insert a participant, link it if it is a member; returns (participant, linked). Emits Added (+ Linked)."""
    participant = Participant.model_validate({**_plain(data.model_dump()), "project_id": project.id})
    _participant_keys(settings, participant)
    session.add(participant)
    await session.flush()
    member = await _find_member(session, participant.vat_key, participant.name_key)
    _emit(
        session,
        contracts.ParticipantAdded(
            project_id=project.id,
            participant_id=participant.id,
            name=participant.name,
            role=participant.role,
            country=participant.country,
            organisation_id=member.organisation_id if member else None,
            ec_contribution=participant.ec_contribution,
        ),
    )
    if member:
        _link(session, participant, project, member.organisation_id)
    if participant.is_foundation and project.foundation_role == domain.FoundationRole.NONE:
        project.foundation_role = domain.foundation_role_for(domain.ParticipantRole(participant.role)).value
        project.updated_at = utcnow()
    return participant, member is not None


async def _participant(session: AsyncSession, project_id: str, participant_id: str) -> Participant:
    p = await session.get(Participant, participant_id)
    if p is None or p.project_id != project_id:
        raise NotFound(f"participant {participant_id} not found in project {project_id}")
    return p


async def add_participant(ctx: Ctx, project_id: str, data: ParticipantCreate) -> ParticipantPublic:
    """Add a consortium participant; emits ParticipantAdded (+ ParticipantLinked, ProjectUpdated for a member)."""
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        if data.cordis_organisation_id:
            dup = await session.execute(
                select(Participant.id).where(
                    Participant.project_id == project_id,
                    Participant.cordis_organisation_id == data.cordis_organisation_id,
                )
            )
            if dup.first():
                raise Conflict(f"organisation {data.cordis_organisation_id} is already in this consortium")
        before = (project.foundation_role, await _member_ids(session, project_id))
        participant, _ = await _add_participant(session, ctx.settings, project, data)
        await session.flush()
        if (project.foundation_role, await _member_ids(session, project_id)) != before:
            await _emit_updated(session, project)
        return ParticipantPublic.model_validate(participant.model_dump())


async def update_participant(
    ctx: Ctx, project_id: str, participant_id: str, data: ParticipantUpdate
) -> ParticipantPublic:
    """Change a participant; a participant not yet linked is matched again."""
    changes = data.model_dump(exclude_unset=True)
    _no_nulls(changes, ("name", "role"))
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        participant = await _participant(session, project_id, participant_id)
        before = await _member_ids(session, project_id)
        for key, value in changes.items():
            setattr(participant, key, value.value if isinstance(value, Enum) else value)
        participant.updated_at = utcnow()
        _participant_keys(ctx.settings, participant)
        if participant.organisation_id is None:
            member = await _find_member(session, participant.vat_key, participant.name_key)
            if member:
                _link(session, participant, project, member.organisation_id)
        await session.flush()
        if await _member_ids(session, project_id) != before:
            await _emit_updated(session, project)
        return ParticipantPublic.model_validate(participant.model_dump())


async def delete_participant(ctx: Ctx, project_id: str, participant_id: str) -> None:
    """Remove a participant; ProjectUpdated when the member organisations changed."""
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        participant = await _participant(session, project_id, participant_id)
        before = await _member_ids(session, project_id)
        await session.delete(participant)
        await session.flush()
        if await _member_ids(session, project_id) != before:
            await _emit_updated(session, project)


async def get_participant(ctx: Ctx, project_id: str, participant_id: str) -> ParticipantPublic:
    """One participant."""
    async with ctx.db.read() as session:
        return ParticipantPublic.model_validate((await _participant(session, project_id, participant_id)).model_dump())


async def list_participants(
    ctx: Ctx,
    project_id: str,
    params: PageParams,
    *,
    role: str | None = None,
    country: str | None = None,
    linked: bool | None = None,
) -> Page[ParticipantPublic]:
    """A project's consortium, coordinator first."""
    stmt = select(Participant).where(Participant.project_id == project_id)
    if role:
        stmt = stmt.where(Participant.role == role)
    if country:
        stmt = stmt.where(Participant.country == country.upper())
    if linked is not None:
        col = Participant.organisation_id
        stmt = stmt.where(col.is_not(None) if linked else col.is_(None))  # type: ignore[union-attr]
    async with ctx.db.read() as session:
        await _project(session, project_id)
        rows, total = await _page(session, stmt, params, (Participant.role, Participant.name, Participant.id))
        return make_page([ParticipantPublic.model_validate(r.model_dump()) for r in rows], total, params)


# -- read model of member organisations (called by the consumers) ----------------


async def record_organisation(session: AsyncSession, profile: OrganisationProfile) -> int:
    """Keep an organisation's profile and link the participants it matches; returns how many were linked.

    Runs in the consumer's transaction. Idempotent: a participant already
    linked is left alone, so replaying an event links nothing new.
    """
    org = await session.get(MemberOrganisation, profile.organisation_id)
    if org is None:
        org = MemberOrganisation(organisation_id=profile.organisation_id, name=profile.name, name_key="")
        session.add(org)
    org.name = profile.name
    org.name_key = domain.normalise_name(profile.name)
    org.vat_number = profile.vat_number
    org.vat_key = domain.normalise_vat(profile.vat_number)
    org.kind = profile.kind
    org.country = (profile.country or "IT")[:2]
    org.status = profile.status
    org.updated_at = utcnow()
    await session.flush()
    if org.status in UNLINKABLE_STATUSES:
        return await _unlink_organisation(session, org.organisation_id)
    conditions = [col(Participant.name_key) == org.name_key]
    if org.vat_key:
        conditions.append(col(Participant.vat_key) == org.vat_key)
    candidates = (
        (
            await session.execute(
                select(Participant)
                .where(Participant.organisation_id.is_(None), or_(*conditions))  # type: ignore[union-attr]
                .order_by(Participant.project_id, Participant.id)
            )
        )
        .scalars()
        .all()
    )
    touched: dict[str, Project] = {}
    for participant in candidates:
        project = touched.get(participant.project_id) or await _project(session, participant.project_id)
        touched[project.id] = project
        _link(session, participant, project, org.organisation_id)
    for project in touched.values():
        await _emit_updated(session, project)
    return len(candidates)


async def record_organisation_status(session: AsyncSession, organisation_id: str, status: str) -> None:
    """Keep an organisation's membership status; one that left or was rejected is unlinked."""
    org = await session.get(MemberOrganisation, organisation_id)
    if org is None:
        return  # status of an organisation we never saw: nothing to keep
    org.status = status
    org.updated_at = utcnow()
    if status in UNLINKABLE_STATUSES:
        await _unlink_organisation(session, organisation_id)


async def _unlink_organisation(session: AsyncSession, organisation_id: str) -> int:
    linked = (
        (await session.execute(select(Participant).where(Participant.organisation_id == organisation_id)))
        .scalars()
        .all()
    )
    projects: set[str] = set()
    for participant in linked:
        participant.organisation_id = None
        participant.updated_at = utcnow()
        projects.add(participant.project_id)
    for project_id in sorted(projects):
        await _emit_updated(session, await _project(session, project_id))
    return 0


async def reconcile_links(ctx: Ctx) -> int:
    """Link every unlinked participant that matches a known organisation; returns how many were linked.

    The two linking paths (participant added, organisation event handled) each
    see only what the other committed: when both commit at the same moment
    neither sees the other. This periodic pass closes that window.
    """
    linkable = col(MemberOrganisation.status).not_in(UNLINKABLE_STATUSES)
    async with ctx.db.transaction() as session:
        candidates = (
            (
                await session.execute(
                    select(Participant)
                    .where(
                        col(Participant.organisation_id).is_(None),
                        or_(
                            col(Participant.vat_key).in_(
                                select(MemberOrganisation.vat_key).where(
                                    col(MemberOrganisation.vat_key).is_not(None), linkable
                                )
                            ),
                            col(Participant.name_key).in_(select(MemberOrganisation.name_key).where(linkable)),
                        ),
                    )
                    .order_by(col(Participant.project_id), col(Participant.id))
                )
            )
            .scalars()
            .all()
        )
        touched: dict[str, Project] = {}
        linked = 0
        for participant in candidates:
            member = await _find_member(session, participant.vat_key, participant.name_key)
            if member is None:
                continue
            project = touched.get(participant.project_id) or await _project(session, participant.project_id)
            touched[project.id] = project
            _link(session, participant, project, member.organisation_id)
            linked += 1
        for project in touched.values():
            await _emit_updated(session, project)
        return linked


async def list_organisations(ctx: Ctx, params: PageParams) -> Page[MemberOrganisationPublic]:
    """The organisations this service knows from the membership events."""
    async with ctx.db.read() as session:
        rows, total = await _page(session, select(MemberOrganisation), params, (MemberOrganisation.name,))
        return make_page([MemberOrganisationPublic.model_validate(r.model_dump()) for r in rows], total, params)


# -- work plan -------------------------------------------------------------------


def _check_month(project: Project, month: int, what: str) -> None:
    _rule(domain.check_month_in_project, month, project.start_date, project.end_date, what)


def _due(project: Project, month: int) -> date | None:
    return domain.month_end(project.start_date, month) if project.start_date else None


async def _reschedule(session: AsyncSession, settings: Settings, project: Project) -> None:
    """Recompute every date of the work plan after the project's dates moved."""
    for d in (await session.execute(select(Deliverable).where(Deliverable.project_id == project.id))).scalars():
        _check_month(project, d.due_month, f"deliverable {d.number} due month")
        _set_deliverable_due(session, settings, d, _due(project, d.due_month))
    for m in (await session.execute(select(Milestone).where(Milestone.project_id == project.id))).scalars():
        _check_month(project, m.due_month, f"milestone {m.number} due month")
        m.due_date = _due(project, m.due_month)
    for r in (await session.execute(select(ReportingPeriod).where(ReportingPeriod.project_id == project.id))).scalars():
        _check_month(project, r.end_month, f"reporting period {r.number} end month")
        _set_period_dates(project, r)


async def _get_part(session: AsyncSession, model: type[T], project_id: str, part_id: str, what: str) -> T:
    row = await session.get(model, part_id)
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
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        _check_month(project, data.end_month, "end_month")
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
    _no_nulls(changes, ("title", "start_month", "end_month"))
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        wp = await _get_part(session, WorkPackage, project_id, wp_id, "work package")
        for key, value in changes.items():
            setattr(wp, key, value)
        if wp.end_month < wp.start_month:
            raise Invalid("end_month is before start_month")
        _check_month(project, wp.end_month, "end_month")
        await _check_lead(session, project_id, wp.lead_participant_id)
        await session.flush()
        return WorkPackagePublic.model_validate(wp.model_dump())


async def delete_work_package(ctx: Ctx, project_id: str, wp_id: str) -> None:
    """Remove a work package that no deliverable or milestone refers to."""
    async with _unit(ctx) as session:
        wp = await _get_part(session, WorkPackage, project_id, wp_id, "work package")
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
        await _work_plan(ctx, session, project_id)
        rows, total = await _page(
            session, select(WorkPackage).where(WorkPackage.project_id == project_id), params, (WorkPackage.number,)
        )
        return make_page([WorkPackagePublic.model_validate(r.model_dump()) for r in rows], total, params)


async def get_work_package(ctx: Ctx, project_id: str, wp_id: str) -> WorkPackagePublic:
    """One work package."""
    async with ctx.db.read() as session:
        await _work_plan(ctx, session, project_id)
        wp = await _get_part(session, WorkPackage, project_id, wp_id, "work package")
        return WorkPackagePublic.model_validate(wp.model_dump())


def _set_deliverable_due(session: AsyncSession, settings: Settings, d: Deliverable, due: date | None) -> None:
    """Move a deliverable's due date; its deadline notices start over for the new date."""
    if d.due_date == due:
        return
    d.due_date = due
    d.updated_at = utcnow()
    if d.id:
        session.info.setdefault("reset_notices", set()).add(d.id)
    if d.status == DeliverableStatus.LATE and due is not None and due >= settings.current_date():
        d.status = DeliverableStatus.PLANNED.value


async def _flush_notice_resets(session: AsyncSession) -> None:
    ids = session.info.pop("reset_notices", set())
    if ids:
        await session.execute(delete(DeliverableNotice).where(DeliverableNotice.deliverable_id.in_(ids)))  # type: ignore[attr-defined]


async def add_deliverable(ctx: Ctx, project_id: str, data: DeliverableCreate) -> DeliverablePublic:
    """Add a deliverable; its due date is the end of its due month."""
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        _check_month(project, data.due_month, "due_month")
        await _check_wp_exists(session, project_id, data.work_package)
        if (
            await session.execute(
                select(Deliverable.id).where(Deliverable.project_id == project_id, Deliverable.number == data.number)
            )
        ).first():
            raise Conflict(f"deliverable {data.number} already exists in this project")
        d = Deliverable.model_validate(
            {**_plain(data.model_dump()), "project_id": project_id, "due_date": _due(project, data.due_month)}
        )
        session.add(d)
        await session.flush()
        return DeliverablePublic.model_validate(d.model_dump())


async def update_deliverable(
    ctx: Ctx, project_id: str, deliverable_id: str, data: DeliverableUpdate
) -> DeliverablePublic:
    """Change a deliverable's plan; a new due month resets its deadline notices."""
    changes = _plain(data.model_dump(exclude_unset=True))
    _no_nulls(changes, ("title", "type", "dissemination", "due_month"))
    changes = {k: ("" if v is None and k == "description" else v) for k, v in changes.items()}
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        d = await _get_part(session, Deliverable, project_id, deliverable_id, "deliverable")
        if "due_month" in changes:
            _check_month(project, changes["due_month"], "due_month")
        if "work_package" in changes:
            await _check_wp_exists(session, project_id, changes["work_package"])
        for key, value in changes.items():
            setattr(d, key, value)
        d.updated_at = utcnow()
        _set_deliverable_due(session, ctx.settings, d, _due(project, d.due_month))
        await _flush_notice_resets(session)
        await session.flush()
        return DeliverablePublic.model_validate(d.model_dump())


async def delete_deliverable(ctx: Ctx, project_id: str, deliverable_id: str) -> None:
    """Remove a deliverable (and its deadline notices)."""
    async with _unit(ctx) as session:
        d = await _get_part(session, Deliverable, project_id, deliverable_id, "deliverable")
        await session.execute(delete(DeliverableNotice).where(DeliverableNotice.deliverable_id == d.id))  # type: ignore[arg-type]
        await session.delete(d)


async def get_deliverable(ctx: Ctx, project_id: str, deliverable_id: str) -> DeliverablePublic:
    """One deliverable."""
    async with ctx.db.read() as session:
        await _work_plan(ctx, session, project_id)
        d = await _get_part(session, Deliverable, project_id, deliverable_id, "deliverable")
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
        stmt = stmt.where(col(Deliverable.project_id).in_(_consortia_of(ctx.own_organisation())))
    async with ctx.db.read() as session:
        if filters.project_id:
            await _work_plan(ctx, session, filters.project_id)
        rows, total = await _page(session, stmt, params, (Deliverable.due_date, Deliverable.number, Deliverable.id))
        return make_page([DeliverablePublic.model_validate(r.model_dump()) for r in rows], total, params)


async def _deliverable_event_fields(session: AsyncSession, d: Deliverable) -> dict[str, Any]:
    project = await _project(session, d.project_id)
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
    async with _unit(ctx) as session:
        d = await _get_part(session, Deliverable, project_id, deliverable_id, "deliverable")
        try:
            domain.check_deliverable_transition(DeliverableStatus(d.status), DeliverableStatus.SUBMITTED)
        except DomainRuleError as exc:
            raise Conflict(str(exc)) from exc
        fields = await _deliverable_event_fields(session, d)
        d.status = DeliverableStatus.SUBMITTED.value
        d.submitted_on = on or ctx.settings.current_date()
        d.updated_at = utcnow()
        _emit(session, contracts.DeliverableSubmitted(**fields, submitted_on=d.submitted_on))
        return DeliverablePublic.model_validate(d.model_dump())


async def accept_deliverable(ctx: Ctx, project_id: str, deliverable_id: str, on: date | None) -> DeliverablePublic:
    """Record the Commission's acceptance of a submitted deliverable."""
    async with _unit(ctx) as session:
        d = await _get_part(session, Deliverable, project_id, deliverable_id, "deliverable")
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
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        _check_month(project, data.due_month, "due_month")
        await _check_wp_exists(session, project_id, data.work_package)
        if (
            await session.execute(
                select(Milestone.id).where(Milestone.project_id == project_id, Milestone.number == data.number)
            )
        ).first():
            raise Conflict(f"milestone {data.number} already exists in this project")
        m = Milestone.model_validate(
            {**data.model_dump(), "project_id": project_id, "due_date": _due(project, data.due_month)}
        )
        session.add(m)
        await session.flush()
        return MilestonePublic.model_validate(m.model_dump())


async def update_milestone(ctx: Ctx, project_id: str, milestone_id: str, data: MilestoneUpdate) -> MilestonePublic:
    """Change a milestone's plan."""
    changes = data.model_dump(exclude_unset=True)
    _no_nulls(changes, ("title", "due_month", "means_of_verification"))
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        m = await _get_part(session, Milestone, project_id, milestone_id, "milestone")
        if "due_month" in changes:
            _check_month(project, changes["due_month"], "due_month")
        if "work_package" in changes:
            await _check_wp_exists(session, project_id, changes["work_package"])
        for key, value in changes.items():
            setattr(m, key, value)
        m.due_date = _due(project, m.due_month)
        await session.flush()
        return MilestonePublic.model_validate(m.model_dump())


async def reach_milestone(ctx: Ctx, project_id: str, milestone_id: str, on: date | None) -> MilestonePublic:
    """Record a milestone as reached; emits MilestoneReached."""
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        m = await _get_part(session, Milestone, project_id, milestone_id, "milestone")
        if m.status == MilestoneStatus.REACHED:
            raise Conflict(f"milestone {m.number} was already reached on {m.reached_on}")
        m.status = MilestoneStatus.REACHED.value
        m.reached_on = on or ctx.settings.current_date()
        _emit(
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
    async with _unit(ctx) as session:
        await session.delete(await _get_part(session, Milestone, project_id, milestone_id, "milestone"))


async def get_milestone(ctx: Ctx, project_id: str, milestone_id: str) -> MilestonePublic:
    """One milestone."""
    async with ctx.db.read() as session:
        await _work_plan(ctx, session, project_id)
        return MilestonePublic.model_validate(
            (await _get_part(session, Milestone, project_id, milestone_id, "milestone")).model_dump()
        )


async def list_milestones(ctx: Ctx, project_id: str, params: PageParams) -> Page[MilestonePublic]:
    """A project's milestones by due month."""
    async with ctx.db.read() as session:
        await _work_plan(ctx, session, project_id)
        rows, total = await _page(
            session,
            select(Milestone).where(Milestone.project_id == project_id),
            params,
            (Milestone.due_month, Milestone.number),
        )
        return make_page([MilestonePublic.model_validate(r.model_dump()) for r in rows], total, params)


def _set_period_dates(project: Project, r: ReportingPeriod) -> None:
    if project.start_date is None:
        r.start_date = r.end_date = r.report_due_date = None
        return
    r.start_date = domain.month_start(project.start_date, r.start_month)
    r.end_date = domain.month_end(project.start_date, r.end_month)
    r.report_due_date = r.end_date + timedelta(days=domain.REPORT_DUE_DAYS)


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
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        _check_month(project, data.end_month, "end_month")
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
        _set_period_dates(project, r)
        session.add(r)
        await session.flush()
        return ReportingPeriodPublic.model_validate(r.model_dump())


async def update_reporting_period(
    ctx: Ctx, project_id: str, period_id: str, data: ReportingPeriodUpdate
) -> ReportingPeriodPublic:
    """Change a reporting period's months."""
    changes = data.model_dump(exclude_unset=True)
    _no_nulls(changes, ("start_month", "end_month"))
    async with _unit(ctx) as session:
        project = await _project(session, project_id)
        r = await _get_part(session, ReportingPeriod, project_id, period_id, "reporting period")
        for key, value in changes.items():
            setattr(r, key, value)
        if r.end_month < r.start_month:
            raise Invalid("end_month is before start_month")
        _check_month(project, r.end_month, "end_month")
        await _check_period_overlap(session, r)
        _set_period_dates(project, r)
        await session.flush()
        return ReportingPeriodPublic.model_validate(r.model_dump())


async def delete_reporting_period(ctx: Ctx, project_id: str, period_id: str) -> None:
    """Remove a reporting period."""
    async with _unit(ctx) as session:
        await session.delete(await _get_part(session, ReportingPeriod, project_id, period_id, "reporting period"))


async def list_reporting_periods(ctx: Ctx, project_id: str, params: PageParams) -> Page[ReportingPeriodPublic]:
    """A project's reporting periods in order."""
    async with ctx.db.read() as session:
        await _work_plan(ctx, session, project_id)
        rows, total = await _page(
            session,
            select(ReportingPeriod).where(ReportingPeriod.project_id == project_id),
            params,
            (ReportingPeriod.number,),
        )
        return make_page([ReportingPeriodPublic.model_validate(r.model_dump()) for r in rows], total, params)


# -- deadline engine ---------------------------------------------------------------


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
                    Project.status.not_in([s.value for s in domain.FINAL_PROJECT_STATUSES]),  # type: ignore[attr-defined]
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
            d = await session.get(Deliverable, deliverable_id)
            if d is None or d.due_date is None:
                return False
            current = domain.deadline_notice(
                d.due_date, DeliverableStatus(d.status), today, ctx.settings.due_soon_horizons
            )
            if current is None or current.threshold != notice.threshold:
                return False  # submitted or rescheduled since the scan read it
            project = await _project(session, d.project_id)
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


# -- CORDIS import ---------------------------------------------------------------------


async def import_cordis(ctx: Ctx, project_csv: str, organization_csv: str) -> CordisImportResult:
    """Import a CORDIS export pair: all of it, or nothing.

    Projects are matched by CORDIS id, participants by (project, CORDIS
    organisation id) or else by normalised name: re-importing updates, never
    duplicates. Every bad row is reported (422) with its file, line and reason.
    """
    ctx.require_staff("import from CORDIS")
    export = cordis.parse_export(project_csv, organization_csv)
    errors = list(export.errors)
    result = CordisImportResult()
    try:
        async with ctx.db.transaction() as session:
            in_file = export.project_ids
            projects: dict[str, Project] = {}
            for parsed in export.projects:
                assert parsed.project.cordis_id
                existing = await _by_cordis_id(session, parsed.project.cordis_id)
                if existing is None:
                    existing = await _adoptable(session, parsed.project.acronym)
                if existing is None:
                    project = Project.model_validate(_plain(parsed.project.model_dump()))
                    session.add(project)
                    await session.flush()
                    _emit(
                        session,
                        contracts.ProjectRegistered(project_id=project.id, project=await _summary(session, project)),
                    )
                    result.projects_created += 1
                    projects[project.cordis_id or ""] = project
                    continue
                changes = {
                    k: v
                    for k, v in parsed.project.model_dump().items()
                    if k in cordis.CORDIS_PROJECT_FIELDS and k in parsed.columns
                }
                # CORDIS is authoritative for its own fields: its status is taken as it is.
                old_status = existing.status
                if changes.get("status") and domain.ProjectStatus(old_status) in domain.FINAL_PROJECT_STATUSES:
                    changes["status"] = old_status
                try:
                    changes["cordis_id"] = parsed.project.cordis_id
                    changed = await _apply_project_changes(session, ctx.settings, existing, changes, authoritative=True)
                except (Invalid, Conflict) as exc:
                    errors.append(cordis.RowError(cordis.PROJECT_FILE, parsed.line, exc.message))
                    continue
                result.projects_updated += int(changed)
                result.projects_unchanged += int(not changed)
                projects[existing.cordis_id or ""] = existing
            seen: dict[tuple[str, str], int] = {}
            touched: set[str] = set()
            for row in export.participants:
                project_or_none = projects.get(row.cordis_project_id)
                if project_or_none is None:
                    project_or_none = await _by_cordis_id(session, row.cordis_project_id)
                if project_or_none is None:
                    if row.cordis_project_id not in in_file:  # else its project row is reported already
                        errors.append(
                            cordis.RowError(
                                cordis.ORGANIZATION_FILE,
                                row.line,
                                f"projectID {row.cordis_project_id} is neither in project.csv nor already registered",
                            )
                        )
                    continue
                project = project_or_none
                data = row.participant
                key = data.cordis_organisation_id or "name:" + domain.normalise_name(data.name)
                if (project.id, key) in seen:
                    errors.append(
                        cordis.RowError(
                            cordis.ORGANIZATION_FILE,
                            row.line,
                            f"organisation {data.cordis_organisation_id or data.name} is already on line "
                            f"{seen[(project.id, key)]} for project {row.cordis_project_id}",
                        )
                    )
                    continue
                seen[(project.id, key)] = row.line
                if errors:
                    continue  # keep checking rows, but write nothing more
                before = (project.foundation_role, await _member_ids(session, project.id))
                existing_p = await _existing_participant(session, project.id, data)
                if existing_p is None:
                    _, linked = await _add_participant(session, ctx.settings, project, data)
                    result.participants_created += 1
                    result.participants_linked += int(linked)
                else:
                    fields = {k: v for k, v in _plain(data.model_dump()).items() if k in row.columns}
                    fields = {k: v for k, v in fields.items() if getattr(existing_p, k) != v}
                    if fields:
                        for k, v in fields.items():
                            setattr(existing_p, k, v)
                        existing_p.updated_at = utcnow()
                        _participant_keys(ctx.settings, existing_p)
                        result.participants_updated += 1
                    if existing_p.organisation_id is None:
                        member = await _find_member(session, existing_p.vat_key, existing_p.name_key)
                        if member:
                            _link(session, existing_p, project, member.organisation_id)
                            result.participants_linked += 1
                await session.flush()
                if (project.foundation_role, await _member_ids(session, project.id)) != before:
                    touched.add(project.id)
            for project_id in sorted(touched):
                await _emit_updated(session, await _project(session, project_id))
            if errors:
                raise _ImportRejected()
            result.project_ids = sorted(p.id for p in projects.values())
            result.warnings = [w.as_dict() for w in export.warnings]
    except _ImportRejected:
        pass
    except IntegrityError as exc:
        raise Conflict("the import clashes with existing records; nothing was imported") from exc
    if errors:
        errors.sort(key=lambda e: (e.file != cordis.PROJECT_FILE, e.line))
        metrics.IMPORTS.labels("rejected").inc()
        raise Invalid(
            f"{len(errors)} bad row(s); nothing was imported. First: {errors[0]}",
            details=[{"file": e.file, "line": e.line, "reason": e.reason} for e in errors],
        )
    metrics.IMPORTS.labels("imported").inc()
    return result


async def _adoptable(session: AsyncSession, acronym: str) -> Project | None:
    """A project entered by hand (no CORDIS id) with this acronym, which an import adopts instead of duplicating."""
    query = select(Project).where(
        col(Project.cordis_id).is_(None), func.lower(Project.acronym) == acronym.strip().lower()
    )
    rows = (await session.scalars(query)).all()
    return rows[0] if len(rows) == 1 else None


class _ImportRejected(Exception):
    """Rolls the import's transaction back when any row was bad."""


async def _existing_participant(session: AsyncSession, project_id: str, data: ParticipantCreate) -> Participant | None:
    stmt = select(Participant).where(Participant.project_id == project_id)
    if data.cordis_organisation_id:
        stmt = stmt.where(Participant.cordis_organisation_id == data.cordis_organisation_id)
    else:
        stmt = stmt.where(Participant.name_key == domain.normalise_name(data.name))
    return (await session.execute(stmt.order_by(Participant.id))).scalars().first()


# -- portfolio --------------------------------------------------------------------------


async def portfolio(ctx: Ctx, foundation_role: str | None = None) -> PortfolioPublic:
    """Counts and budgets by programme, funding scheme, thematic area and status; the foundation's share."""
    async with ctx.db.read() as session:
        stmt = select(Project)
        if foundation_role:
            stmt = stmt.where(Project.foundation_role == foundation_role)
        projects = (await session.execute(stmt)).scalars().all()
        contributions: dict[str, float] = {}
        for pid, ec in await session.execute(
            select(Participant.project_id, func.sum(Participant.ec_contribution))
            .where(Participant.is_foundation.is_(True))  # type: ignore[attr-defined]
            .group_by(Participant.project_id)
        ):
            contributions[pid] = float(ec or 0)
    figures = domain.portfolio(
        domain.PortfolioProject(
            status=p.status,
            framework_programme=p.framework_programme,
            funding_scheme=p.funding_scheme,
            thematic_areas=list(p.thematic_areas),
            total_cost=p.total_cost,
            ec_max_contribution=p.ec_max_contribution,
            foundation_role=p.foundation_role,
            foundation_ec_contribution=contributions.get(p.id, 0.0),
        )
        for p in projects
    )

    def b(bucket: domain.Bucket) -> BucketPublic:
        return BucketPublic(
            projects=bucket.projects,
            total_cost=round(bucket.total_cost, 2),
            ec_max_contribution=round(bucket.ec_max_contribution, 2),
        )

    return PortfolioPublic(
        overall=b(figures.overall),
        by_programme={k: b(v) for k, v in sorted(figures.by_programme.items())},
        by_funding_scheme={k: b(v) for k, v in sorted(figures.by_funding_scheme.items())},
        by_thematic_area={k: b(v) for k, v in sorted(figures.by_thematic_area.items())},
        by_status={k: b(v) for k, v in sorted(figures.by_status.items())},
        by_foundation_role={k: b(v) for k, v in sorted(figures.by_foundation_role.items())},
        foundation_projects=figures.foundation_projects,
        foundation_ec_contribution=round(figures.foundation_ec_contribution, 2),
    )
