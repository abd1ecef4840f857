"""Queries of the lifecycle: fee plans, renewals, the history, overdue members."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import RowMapping, Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from distretto_shared.db import CoreUnitOfWork
from distretto_shared.web import Invalid
from membership.lifecycle.domain import MembershipStatus
from membership.lifecycle.models import FeePlan, Renewal, StatusChange
from membership.organisations.models import Organisation


async def plan(session: AsyncSession, fee_plan_id: str | None) -> FeePlan | None:
    """The fee plan named in a request (None for none); 422 when it does not exist."""
    if fee_plan_id is None:
        return None
    found = await session.get(FeePlan, fee_plan_id)
    if found is None:
        raise Invalid(f"fee plan {fee_plan_id} does not exist")
    return found


_FEE_PLAN = FeePlan.__table__  # type: ignore[attr-defined]
_FEE_PLAN_ROW = select(_FEE_PLAN).where(_FEE_PLAN.c.id == bindparam("id"))
_STATUS_CHANGE_INSERT = StatusChange.__table__.insert()  # type: ignore[attr-defined]


async def plan_in(uow: CoreUnitOfWork, fee_plan_id: str | None) -> RowMapping | None:
    """:func:`plan` in a Core unit of work: the fee plan's row (None for none); 422 when it does not exist."""
    if fee_plan_id is None:
        return None
    found = (await uow.execute(_FEE_PLAN_ROW, {"id": fee_plan_id})).mappings().first()
    if found is None:
        raise Invalid(f"fee plan {fee_plan_id} does not exist")
    return found


async def record_step(uow: CoreUnitOfWork, change: StatusChange) -> None:
    """Store a lifecycle step (built, not yet stored) in a Core unit of work."""
    await uow.execute(_STATUS_CHANGE_INSERT, [{name: getattr(change, name) for name in StatusChange.model_fields}])


async def plan_named(session: AsyncSession, name: str) -> FeePlan | None:
    """The fee plan with this name, if any."""
    return (await session.execute(select(FeePlan).where(col(FeePlan.name) == name))).scalar_one_or_none()


def renewals_of(organisation_id: str) -> Select[Any]:
    """An organisation's renewals (order them: latest first is ``period_start`` descending)."""
    return select(Renewal).where(col(Renewal.organisation_id) == organisation_id)


def history_of(organisation_id: str) -> Select[Any]:
    """An organisation's lifecycle steps."""
    return select(StatusChange).where(col(StatusChange.organisation_id) == organisation_id)


async def overdue_candidates(session: AsyncSession, today: date) -> Sequence[Any]:
    """(id, renewal due, the plan's grace days or None) of every active member whose renewal date has passed."""
    return (
        await session.execute(
            select(col(Organisation.id), col(Organisation.renewal_due), col(FeePlan.grace_days))
            .outerjoin(FeePlan, col(FeePlan.id) == Organisation.fee_plan_id)
            .where(col(Organisation.status) == MembershipStatus.active.value, col(Organisation.renewal_due) < today)
        )
    ).all()
