"""Queries of the figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.figures.models import YearlyFigures
from membership.organisations.models import Organisation


async def of_year(session: AsyncSession, organisation_id: str, year: int) -> YearlyFigures | None:
    """An organisation's figures of one year, if recorded."""
    return (
        await session.execute(
            select(YearlyFigures).where(
                col(YearlyFigures.organisation_id) == organisation_id, col(YearlyFigures.year) == year
            )
        )
    ).scalar_one_or_none()


async def latest(session: AsyncSession, org: Organisation) -> YearlyFigures | None:
    """The organisation's figures of its latest year."""
    if org.latest_year is None:
        return None
    return await of_year(session, org.id, org.latest_year)


async def latest_of(session: AsyncSession, orgs: Sequence[Organisation]) -> dict[str, YearlyFigures]:
    """The latest figures of each of ``orgs`` that has some, by organisation id (one query)."""
    wanted = {o.id: o.latest_year for o in orgs if o.latest_year is not None}
    if not wanted:
        return {}
    rows = (
        (await session.execute(select(YearlyFigures).where(col(YearlyFigures.organisation_id).in_(list(wanted)))))
        .scalars()
        .all()
    )
    return {f.organisation_id: f for f in rows if wanted.get(f.organisation_id) == f.year}


async def every_year(session: AsyncSession, organisation_id: str) -> list[YearlyFigures]:
    """Every year's figures of an organisation, latest first."""
    query = (
        select(YearlyFigures)
        .where(col(YearlyFigures.organisation_id) == organisation_id)
        .order_by(col(YearlyFigures.year).desc())
    )
    return list((await session.execute(query)).scalars().all())


async def register_with_latest_figures(session: AsyncSession) -> Sequence[Any]:
    """Per organisation: status, kind, sectors, size class and its latest year's figures (or NULLs)."""
    return (
        await session.execute(
            select(
                col(Organisation.status),
                col(Organisation.kind),
                col(Organisation.sectors),
                col(Organisation.size_class),
                col(YearlyFigures.year),
                col(YearlyFigures.staff),
                col(YearlyFigures.rd_staff),
                col(YearlyFigures.turnover_eur),
                col(YearlyFigures.lab_m2),
                col(YearlyFigures.patents),
            )
            .outerjoin(
                YearlyFigures,
                and_(
                    col(YearlyFigures.organisation_id) == Organisation.id,
                    col(YearlyFigures.year) == Organisation.latest_year,
                ),
            )
            .order_by(Organisation.id)
        )
    ).all()
