"""Queries of competence profiles."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from matchmaking.anonymise import brand_forms
from matchmaking.profiles.models import Organisation, Participation, Project

PUBLIC_STATUSES = ("active", "suspended", "lapsed", "left")
"""Organisations that are or were members: their profiles are public to members (applications are not)."""


async def org_names(session: AsyncSession) -> list[str]:
    """Every form of every known organisation's name (``anonymise.brand_forms``): what anonymisation removes."""
    forms: set[str] = set()
    for name, website in (await session.execute(select(Organisation.name, Organisation.website))).all():
        forms |= brand_forms(name, website)
    return sorted(forms)


async def projects_of(session: AsyncSession, organisation_id: str) -> list[Project]:
    q = (
        select(Project)
        .join(Participation, col(Participation.project_id) == col(Project.project_id))
        .where(Participation.organisation_id == organisation_id)
        .order_by(Project.project_id)
    )
    return list((await session.execute(q)).scalars())
