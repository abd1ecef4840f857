"""Use cases of competence profiles: kept current from membership and projects events, read by members."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.contracts.membership import OrganisationProfile
from distretto_shared.contracts.projects import ProjectSummary
from distretto_shared.conventions import canonical_id, paginate
from distretto_shared.web import NotFound, Page, PageParams, make_page
from matchmaking.common import Ctx
from matchmaking.profiles.models import Organisation, OrganisationPublic, Participation, Project
from matchmaking.profiles.repository import PUBLIC_STATUSES, projects_of
from matchmaking.search.engine import Engine
from matchmaking.search.indexing import PROFILE, refresh_documents
from matchmaking.tables import utcnow

# -- organisations and projects (from events) ------------------------------------------------------


async def reindex_profiles(session: AsyncSession, ctx: Ctx, organisation_ids: list[str]) -> None:
    """Record the organisations' profile items (queued for encoding when their texts changed) and
    index them after the commit (or drop them when not active)."""
    await refresh_documents(ctx, session, [f"{PROFILE}:{org_id}" for org_id in organisation_ids])


async def apply_organisation(
    ctx: Ctx, session: AsyncSession, profile: OrganisationProfile, *, status: str | None = None
) -> None:
    """An organisation registered, changed or joined: keep its data, refresh its profile."""
    org_id = canonical_id(profile.organisation_id)
    org = await session.get(Organisation, org_id)
    if org is None:
        org = Organisation(organisation_id=org_id, name=profile.name, kind=profile.kind, status="")
    org.name = profile.name
    org.kind = profile.kind
    org.status = status or profile.status
    org.sectors = list(profile.sectors)
    org.country = (profile.country or "IT").upper()[:2]
    # Kept only for anonymisation: one too long for the column is left out rather than failing the event.
    org.website = profile.website if profile.website and len(profile.website) <= 300 else None
    org.description = profile.description
    org.competences = list(profile.competences)
    org.keywords = list(profile.keywords)
    org.updated_at = utcnow()
    session.add(org)
    await session.flush()
    await reindex_profiles(session, ctx, [org.organisation_id])


async def set_organisation_status(ctx: Ctx, session: AsyncSession, organisation_id: str, status: str) -> None:
    """An organisation was suspended, lapsed, rejected or left: its profile leaves the index."""
    org = await session.get(Organisation, organisation_id)
    if org is None:
        return
    org.status = status
    org.updated_at = utcnow()
    session.add(org)
    await session.flush()
    await reindex_profiles(session, ctx, [organisation_id])


async def apply_project(ctx: Ctx, session: AsyncSession, summary: ProjectSummary) -> None:
    """A project was registered or changed: keep it, refresh the profiles of its member organisations."""
    project = await session.get(Project, summary.project_id)
    before = set(project.member_organisation_ids) if project else set()
    if project is None:
        project = Project(project_id=summary.project_id)
    project.acronym = summary.acronym
    project.title = summary.title
    project.objective = summary.objective
    project.topics = list(summary.topics)
    project.keywords = list(summary.keywords)
    members = [canonical_id(org_id) for org_id in summary.member_organisation_ids]
    project.member_organisation_ids = members
    project.updated_at = utcnow()
    session.add(project)
    after = set(members)
    gone = before - after
    if gone:
        await session.execute(
            delete(Participation).where(
                col(Participation.project_id) == summary.project_id,
                col(Participation.organisation_id).in_(gone),
            )
        )
    for org_id in sorted(after):
        if await session.get(Participation, (summary.project_id, org_id)) is None:
            session.add(Participation(project_id=summary.project_id, organisation_id=org_id))
    await session.flush()
    linked = (
        await session.execute(
            select(Participation.organisation_id).where(Participation.project_id == summary.project_id)
        )
    ).scalars()
    await reindex_profiles(session, ctx, sorted(set(linked) | gone))


async def add_participation(ctx: Ctx, session: AsyncSession, project_id: str, organisation_id: str) -> None:
    """A member organisation takes part in a project: its profile gains the project's text."""
    if await session.get(Participation, (project_id, organisation_id)) is None:
        session.add(Participation(project_id=project_id, organisation_id=organisation_id))
        await session.flush()
    await reindex_profiles(session, ctx, [organisation_id])


_ONE_PROFILE = (
    sa.select(
        *(col(c) for c in (Organisation.organisation_id, Organisation.name, Organisation.kind, Organisation.status)),
        *(col(c) for c in (Organisation.sectors, Organisation.country, Organisation.description)),
        col(Organisation.competences),
        col(Organisation.keywords),
        col(Project.acronym),
        col(Project.title),
    )
    .select_from(Organisation)
    .outerjoin(Participation, col(Participation.organisation_id) == col(Organisation.organisation_id))
    .outerjoin(Project, col(Project.project_id) == col(Participation.project_id))
    .where(col(Organisation.organisation_id) == sa.bindparam("organisation_id"))
    .order_by(col(Project.project_id))
)
"""One organisation with its projects' names: one statement, no ORM instances (the read of a profile)."""


async def get_organisation(ctx: Ctx, organisation_id: str) -> OrganisationPublic:
    """An organisation's competence profile as matchmaking holds it."""
    ctx.require_member_or_staff("see competence profiles")
    async with ctx.db.read() as session:
        rows = (await session.execute(_ONE_PROFILE, {"organisation_id": organisation_id})).all()
    if not rows or not (ctx.acts_for(organisation_id) or rows[0].status in PUBLIC_STATUSES):
        raise NotFound(f"organisation {organisation_id} not known to matchmaking")
    return _public(ctx, rows[0], [f"{r.acronym}: {r.title}" for r in rows if r.title is not None])


def _org_public(ctx: Ctx, org: Organisation, projects: list[Project]) -> OrganisationPublic:
    return _public(ctx, org, [f"{p.acronym}: {p.title}" for p in projects])


def _public(ctx: Ctx, org: Any, projects: list[str]) -> OrganisationPublic:
    """A competence profile as the API shows it, from an ``Organisation`` or a row with its columns."""
    return OrganisationPublic(
        organisation_id=org.organisation_id,
        name=org.name,
        kind=org.kind,
        status=org.status,
        sectors=org.sectors,
        country=org.country,
        description=org.description,
        competences=org.competences,
        keywords=org.keywords,
        projects=projects,
        # Whether it is indexed, not the indexed document (rebuilt from its compressed fields).
        indexed=f"{PROFILE}:{org.organisation_id}" in ctx.get(Engine).index.row_of,
    )


async def list_organisations(ctx: Ctx, page: PageParams, *, status: str | None = None) -> Page[OrganisationPublic]:
    """Known organisations, by name (others' applications left out)."""
    ctx.require_member_or_staff("see competence profiles")
    q = select(Organisation)
    if not ctx.sees_everything:
        q = q.where(
            or_(
                col(Organisation.status).in_(sorted(PUBLIC_STATUSES)),
                col(Organisation.organisation_id) == ctx.own_organisation(),
            )
        )
    if status:
        q = q.where(Organisation.status == status)
    async with ctx.db.read() as session:
        rows: Page[Organisation] = await paginate(
            session, q, page, order_by=[Organisation.name, Organisation.organisation_id]
        )
        items = [_org_public(ctx, org, await projects_of(session, org.organisation_id)) for org in rows.items]
    return make_page(items, rows.total, page)
