"""Queries of the figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
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


_FIGURES = YearlyFigures.__table__  # type: ignore[attr-defined]
_FIGURES_OF_YEAR = select(_FIGURES).where(
    _FIGURES.c.organisation_id == bindparam("id"), _FIGURES.c.year == bindparam("year")
)


async def latest_on(conn: AsyncConnection, organisation: Mapping[Any, Any]) -> YearlyFigures | None:
    """:func:`latest` for an organisation read as a row on a plain connection (``Database.core_read``)."""
    if organisation["latest_year"] is None:
        return None
    key = {"id": organisation["id"], "year": organisation["latest_year"]}
    row = (await conn.execute(_FIGURES_OF_YEAR, key)).mappings().first()
    return None if row is None else YearlyFigures.model_validate(dict(row))


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
