"""Queries about projects that every aggregate uses: a project by id, its member organisations, the
event summary of a project."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import select

from distretto_shared.contracts import projects as contracts
from distretto_shared.db import load
from distretto_shared.web import NotFound
from projects.consortium.models import Participant
from projects.project.models import Project, ProjectPublic
from projects.unit import emit


async def load_project(session: AsyncSession, project_id: str) -> Project:
    """The project, or a 404."""
    project = await load(session, Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} not found")
    return project


async def member_ids(session: AsyncSession, project_id: str) -> list[str]:
    rows = await session.execute(
        select(Participant.organisation_id)
        .where(Participant.project_id == project_id, Participant.organisation_id.is_not(None))  # type: ignore[union-attr]
        .distinct()
    )
    return sorted(r[0] for r in rows)


_PROJECT = Project.__table__  # type: ignore[attr-defined]
_PARTICIPANT = Participant.__table__  # type: ignore[attr-defined]
# A project's page read as Core statements built once, the id a bound parameter: SQLAlchemy neither
# builds nor keys them per request, and no ORM object is made for a row only turned into the answer.
_PROJECT_ROW = sa.select(_PROJECT).where(_PROJECT.c.id == sa.bindparam("id"))
_MEMBER_IDS = (
    sa.select(_PARTICIPANT.c.organisation_id)
    .where(_PARTICIPANT.c.project_id == sa.bindparam("id"), _PARTICIPANT.c.organisation_id.is_not(None))
    .distinct()
)


async def project_page(conn: AsyncConnection, project_id: str) -> ProjectPublic:
    """The project as the API shows it, read on a plain connection (``Database.core_read``); a 404
    when missing. The same statements as :func:`load_project` and :func:`member_ids`."""
    row = (await conn.execute(_PROJECT_ROW, {"id": project_id})).mappings().first()
    if row is None:
        raise NotFound(f"project {project_id} not found")
    members = sorted(r[0] for r in await conn.execute(_MEMBER_IDS, {"id": row["id"]}))
    return ProjectPublic.model_validate({**row, "member_organisation_ids": members})


async def summary(session: AsyncSession, project: Project) -> contracts.ProjectSummary:
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
        member_organisation_ids=await member_ids(session, project.id),
    )


def project_public(project: Project, member_ids: list[str]) -> ProjectPublic:
    return ProjectPublic.model_validate({**project.model_dump(), "member_organisation_ids": member_ids})


async def emit_updated(session: AsyncSession, project: Project) -> None:
    await session.flush()
    emit(session, contracts.ProjectUpdated(project_id=project.id, project=await summary(session, project)))


async def by_cordis_id(session: AsyncSession, cordis_id: str) -> Project | None:
    return (await session.execute(select(Project).where(Project.cordis_id == cordis_id))).scalar_one_or_none()


async def members_of(session: AsyncSession, project_ids: list[str]) -> dict[str, list[str]]:
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
