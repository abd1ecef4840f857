"""Queries of competence profiles."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.db import CoreUnitOfWork
from matchmaking.anonymise import NamePatterns
from matchmaking.common import Ctx
from matchmaking.profiles.models import Participation, Project
from matchmaking.profiles.names import OrganisationNames

PUBLIC_STATUSES = ("active", "suspended", "lapsed", "left")
"""Organisations that are or were members: their profiles are public to members (applications are not)."""


async def org_names(ctx: Ctx, session: AsyncSession) -> NamePatterns:
    """Every form of every known organisation's name (``anonymise.brand_forms``), compiled: what
    anonymisation removes (this instance's copy, brought up to date first: ``profiles.names``)."""
    return await ctx.get(OrganisationNames).patterns(session)


async def org_names_and_status(
    ctx: Ctx, session: AsyncSession | CoreUnitOfWork, organisation_id: str
) -> tuple[NamePatterns, str | None]:
    """:func:`org_names`, and the status of one organisation (None: not known here), in one statement."""
    return await ctx.get(OrganisationNames).patterns_and_status(session, organisation_id)


async def projects_of(session: AsyncSession, organisation_id: str) -> list[Project]:
    q = (
        select(Project)
        .join(Participation, col(Participation.project_id) == col(Project.project_id))
        .where(Participation.organisation_id == organisation_id)
        .order_by(Project.project_id)
    )
    return list((await session.execute(q)).scalars())
