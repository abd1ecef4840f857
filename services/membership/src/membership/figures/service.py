"""Use cases of the figures: an organisation's yearly figures, the district's live aggregates and their event."""

from __future__ import annotations

from dataclasses import asdict

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.contracts import membership as contracts
from distretto_shared.db import load
from distretto_shared.outbox import add_event
from membership.common import Ctx
from membership.figures import repository
from membership.figures.domain import DistrictFigures, MemberSnapshot, district_figures, size_class_for
from membership.figures.models import (
    DistrictFiguresPublic,
    PublishedFigures,
    YearlyFigures,
    YearlyFiguresCreate,
    YearlyFiguresPublic,
    figures_public,
)
from membership.lifecycle.domain import MembershipStatus
from membership.organisations import repository as organisations
from membership.organisations.domain import OrganisationKind
from membership.organisations.models import Organisation
from membership.organisations.service import profile
from membership.tables import utcnow

# A domain metric (the backbone's HTTP/outbox/consumer metrics come on top).
MEMBERS = Gauge("distretto_membership_members", "Organisations in the register by status and kind", ["status", "kind"])


async def store_figures(
    session: AsyncSession, org: Organisation, year: int, data: YearlyFiguresCreate
) -> YearlyFigures:
    """Write a year's figures (the whole record); the latest year and the size class follow.

    The caller publishes ``OrganisationUpdated`` when ``org.size_class`` changed (the profile
    other services keep carries it).
    """
    fig = await repository.of_year(session, org.id, year)
    values = data.model_dump()
    if fig is None:
        fig = YearlyFigures(organisation_id=org.id, year=year, **values)
        session.add(fig)
    elif {k: getattr(fig, k) for k in values} != values:
        for name, value in values.items():
            setattr(fig, name, value)
        fig.updated_at = utcnow()
    if org.latest_year is None or year >= org.latest_year:
        org.latest_year = year
        size = size_class_for(org.kind, fig)
        if size != org.size_class:
            org.size_class = size
            org.updated_at = utcnow()
    return fig


async def set_figures(ctx: Ctx, organisation_id: str, year: int, data: YearlyFiguresCreate) -> YearlyFiguresPublic:
    """Record (or correct) an organisation's figures for a year; the size class follows."""
    async with ctx.db.transaction() as session:
        org = await organisations.own(ctx, session, organisation_id, "record this organisation's figures")
        size_before = org.size_class
        fig = await store_figures(session, org, year, data)
        if org.size_class != size_before:
            add_event(
                session, contracts.OrganisationUpdated(organisation_id=org.id, profile=profile(org)), source=ctx.source
            )
    return figures_public(fig, org.kind)


async def list_figures(ctx: Ctx, organisation_id: str) -> list[YearlyFiguresPublic]:
    """Every year's figures of an organisation, latest first."""
    async with ctx.db.read() as session:
        org = await organisations.own(ctx, session, organisation_id, "see this organisation's figures")
        return [figures_public(f, org.kind) for f in await repository.every_year(session, org.id)]


async def compute_figures(ctx: Ctx) -> DistrictFigures:
    """The district's live aggregates (also refreshes the members gauges)."""
    async with ctx.db.read() as session:
        rows = await repository.register_with_latest_figures(session)
    members = [
        MemberSnapshot(
            status=r[0],
            kind=r[1],
            sectors=tuple(r[2] or ()),
            size_class=r[3],
            year=r[4],
            staff=r[5] or 0,
            rd_staff=r[6] or 0,
            turnover_eur=r[7] or 0.0,
            lab_m2=r[8] or 0.0,
            patents=r[9] or 0,
        )
        for r in rows
    ]
    by_status_kind = {(s.value, k.value): 0 for s in MembershipStatus for k in OrganisationKind}
    for m in members:
        by_status_kind[(m.status, m.kind)] = by_status_kind.get((m.status, m.kind), 0) + 1
    for (status, kind), n in by_status_kind.items():
        MEMBERS.labels(status, kind).set(n)
    figures = district_figures(members)
    # Rounded so float summation order can never make "changed" figures out of equal ones.
    figures.turnover_eur = round(figures.turnover_eur, 2)
    figures.lab_m2 = round(figures.lab_m2, 2)
    return figures


async def figures_now(ctx: Ctx) -> DistrictFiguresPublic:
    """``GET /figures``."""
    figures = await compute_figures(ctx)
    return DistrictFiguresPublic(computed_at=utcnow(), **asdict(figures))


async def publish_figures_if_changed(ctx: Ctx) -> bool:
    """Publish DistrictFiguresChanged when the figures differ from the last published ones.

    Run on a schedule (``figures_interval``), this is the debounce: a burst of
    writes between two runs yields one event.
    """
    figures = await compute_figures(ctx)
    payload = asdict(figures)
    async with ctx.db.transaction() as session:
        last = await load(session, PublishedFigures, "district")
        if last is not None and last.payload == payload:
            return False
        now = utcnow()
        if last is None:
            session.add(PublishedFigures(key="district", payload=payload, published_at=now))
        else:
            last.payload, last.published_at = payload, now
        add_event(session, contracts.DistrictFiguresChanged(computed_at=now, **payload), source=ctx.source)
    return True
