"""Tables and API shapes of the lifecycle: fee plans, renewals, lifecycle requests and the history."""

from __future__ import annotations

from datetime import date

from sqlalchemy import String
from sqlmodel import Field

from distretto_shared.conventions import Id, StrictFloat, StrictInt, UtcDateTime
from membership.lifecycle.domain import LifecycleAction, MembershipStatus
from membership.tables import STRICT_INPUT, UTC_DT, Base, new_id, utcnow


class FeePlanBase(Base):
    """What a membership costs and for how long."""

    name: str = Field(min_length=1, max_length=100, unique=True)
    amount_eur: StrictFloat = Field(ge=0, le=1e9)
    period_months: StrictInt = Field(default=12, ge=1, le=60)
    grace_days: StrictInt = Field(default=30, ge=0, le=365)


class FeePlanCreate(FeePlanBase):
    """Body of ``POST /fee-plans``."""

    model_config = STRICT_INPUT  # type: ignore[assignment]


class FeePlan(FeePlanBase, table=True):
    """A fee plan."""

    __tablename__ = "fee_plan"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    created_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


class FeePlanPublic(FeePlanBase):
    """A fee plan as the API shows it."""

    id: Id


class RenewalCreate(Base):
    """Body of ``POST /organisations/{id}/renewals``: a paid renewal."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    paid_on: date | None = None
    """Default: today."""
    amount_eur: StrictFloat | None = Field(default=None, ge=0, le=1e9)
    """Default: the fee plan's amount (0 without a plan)."""


class Renewal(Base, table=True):
    """A paid membership period."""

    __tablename__ = "renewal"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36, index=True)
    period_start: date
    period_end: date
    amount_eur: float
    paid_on: date
    created_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


class RenewalPublic(Base):
    """A renewal as the API shows it."""

    id: Id
    organisation_id: Id
    period_start: date
    period_end: date
    amount_eur: float
    paid_on: date


# -- Lifecycle requests and history --------------------------------------------


class ApproveRequest(Base):
    """Body of ``POST /organisations/{id}/approve``."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    fee_plan_id: Id | None = None
    joined_on: date | None = None
    """Default: today. The first renewal falls due one period later."""


class ReasonRequest(Base):
    """Body of reject / suspend / reinstate / leave."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    reason: str = Field(default="", max_length=1000)


class StatusChange(Base, table=True):
    """One step of an organisation's lifecycle (the audit trail)."""

    __tablename__ = "status_change"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36, index=True)
    action: LifecycleAction = Field(sa_type=String(20))
    from_status: MembershipStatus = Field(sa_type=String(20))
    to_status: MembershipStatus = Field(sa_type=String(20))
    reason: str = Field(default="", max_length=1000)
    at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


class StatusChangePublic(Base):
    """A lifecycle step as the API shows it."""

    action: LifecycleAction
    from_status: MembershipStatus
    to_status: MembershipStatus
    reason: str
    at: UtcDateTime
