"""Use cases of the membership lifecycle: approve, change status, renew, lapse, history, fee plans."""

from __future__ import annotations

from datetime import date

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from distretto_shared.contracts import membership as contracts
from distretto_shared.conventions import paginate
from distretto_shared.events import Event
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, Page, PageParams
from membership import common
from membership.common import Ctx
from membership.figures import repository as figures
from membership.lifecycle import domain, repository
from membership.lifecycle.domain import Announcement, IllegalTransition, LifecycleAction, MembershipStatus
from membership.lifecycle.models import (
    ApproveRequest,
    FeePlan,
    FeePlanCreate,
    FeePlanPublic,
    Renewal,
    RenewalCreate,
    RenewalPublic,
    StatusChange,
    StatusChangePublic,
)
from membership.organisations import repository as organisations
from membership.organisations.models import Organisation, OrganisationPublic
from membership.organisations.service import organisation_public, profile
from membership.tables import as_utc, fields, utcnow

# A domain metric (the backbone's HTTP/outbox/consumer metrics come on top).
TRANSITIONS = Counter(
    "distretto_membership_transitions_total", "Lifecycle transitions applied", ["from_status", "to_status"]
)


def _zero_transitions() -> None:
    # At zero from the first scrape, for every legal transition.
    for (status, _action), after in domain.TRANSITIONS.items():
        TRANSITIONS.labels(status.value, after.value)


_zero_transitions()


def _step(
    ctx: Ctx, org: Organisation, action: LifecycleAction, reason: str = ""
) -> tuple[tuple[MembershipStatus, MembershipStatus], StatusChange, Event | None]:
    """Move ``org`` along the lifecycle: the step, its record and its event (None when it announces
    nothing), for the caller's unit of work to store. Raises Conflict when illegal."""
    try:
        step = domain.transition(MembershipStatus(org.status), action)
    except IllegalTransition as exc:
        raise Conflict(str(exc), details={"status": exc.status.value, "action": action.value}) from exc
    before, after = step.before, step.after
    change = StatusChange(organisation_id=org.id, action=action, from_status=before, to_status=after, reason=reason)
    if step.announce is None:
        return (before, after), change, None
    org.status = after
    org.status_changed_at = org.updated_at = utcnow()
    event: Event
    match step.announce:
        case Announcement.joined:
            event = contracts.OrganisationJoined(
                organisation_id=org.id,
                profile=profile(org),
                first_join=step.first_join,
                joined_on=org.joined_on or common.today(),
            )
        case Announcement.rejected:
            event = contracts.OrganisationRejected(organisation_id=org.id, reason=reason)
        case Announcement.suspended:
            event = contracts.OrganisationSuspended(organisation_id=org.id, reason=reason)
        case Announcement.lapsed:
            event = contracts.OrganisationLapsed(organisation_id=org.id, renewal_due=org.renewal_due)
        case Announcement.left:
            event = contracts.OrganisationLeft(organisation_id=org.id, reason=reason)
    return (before, after), change, event


def _apply(
    ctx: Ctx,
    session: AsyncSession,
    org: Organisation,
    action: LifecycleAction,
    reason: str = "",
) -> tuple[MembershipStatus, MembershipStatus]:
    """Move ``org`` along the lifecycle, record the step and its event. Raises Conflict when illegal."""
    step, change, event = _step(ctx, org, action, reason)
    session.add(change)
    if event is not None:
        add_event(session, event, source=ctx.source)
    return step


def _count(step: tuple[MembershipStatus, MembershipStatus]) -> None:
    if step[0] != step[1]:
        TRANSITIONS.labels(step[0].value, step[1].value).inc()


def _period_months(ctx: Ctx, plan: FeePlan | None) -> int:
    return plan.period_months if plan else ctx.settings.default_period_months


_APPROVED = ("fee_plan_id", "joined_on", "renewal_due", "status", "status_changed_at", "updated_at")
"""The columns an approval may change."""


async def approve(ctx: Ctx, organisation_id: str, request: ApproveRequest) -> OrganisationPublic:
    """applied → active: the organisation becomes a member; its first renewal falls due one period later."""
    # Core unit of work: the same statements as an ORM session's, without the session.
    async with ctx.db.core_transaction() as uow:
        org = await organisations.for_staff_in(ctx, uow, organisation_id, "approve an application")
        joined_on = request.joined_on or common.today()
        applied = MembershipStatus(org.status) is MembershipStatus.applied
        if applied:
            plan = await repository.plan_in(uow, request.fee_plan_id)
            org.fee_plan_id = plan["id"] if plan else None
            org.joined_on = joined_on
            period = plan["period_months"] if plan else ctx.settings.default_period_months
            org.renewal_due = domain.add_months(joined_on, period)
        step, change, event = _step(ctx, org, LifecycleAction.approve)
        if applied or event is not None:
            await organisations.update(uow, org.id, {name: getattr(org, name) for name in _APPROVED})
        await repository.record_step(uow, change)
        if event is not None:
            add_event(uow, event, source=ctx.source)
        latest = await figures.latest_on(uow.connection, fields(org))
    _count(step)
    return organisation_public(ctx, org, latest)


async def change_status(
    ctx: Ctx, organisation_id: str, action: LifecycleAction, reason: str = ""
) -> OrganisationPublic:
    """reject / suspend / reinstate / lapse (staff) / leave (the organisation itself, or staff)."""
    async with ctx.db.transaction() as session:
        if action is LifecycleAction.leave:
            org = await organisations.own(ctx, session, organisation_id, "end this organisation's membership")
        else:
            org = await organisations.for_staff(ctx, session, organisation_id, f"{action.value} an organisation")
        step = _apply(ctx, session, org, action, reason)
        latest = await figures.latest(session, org)
    _count(step)
    return organisation_public(ctx, org, latest)


async def renew(ctx: Ctx, organisation_id: str, request: RenewalCreate) -> RenewalPublic:
    """Record a paid renewal: extends an active membership, brings a lapsed one back.

    Staff only: a renewal records a payment the foundation received and moves the lifecycle
    (lapsed → active); a member cannot certify its own payment.
    """
    async with ctx.db.transaction() as session:
        org = await organisations.for_staff(ctx, session, organisation_id, "record a paid renewal")
        status = MembershipStatus(org.status)
        plan = await session.get(FeePlan, org.fee_plan_id) if org.fee_plan_id else None
        paid_on = request.paid_on or common.today()
        start, end = domain.renewal_period(org.renewal_due, paid_on, _period_months(ctx, plan), status)
        step = _apply(ctx, session, org, LifecycleAction.renew)
        amount = request.amount_eur if request.amount_eur is not None else (plan.amount_eur if plan else 0.0)
        renewal = Renewal(
            organisation_id=org.id, period_start=start, period_end=end, amount_eur=amount, paid_on=paid_on
        )
        session.add(renewal)
        org.renewal_due = end
        org.updated_at = utcnow()
        add_event(
            session,
            contracts.OrganisationRenewed(
                organisation_id=org.id,
                period_start=start,
                period_end=end,
                renewal_due=end,
                paid_on=paid_on,
                reactivated=status is MembershipStatus.lapsed,
            ),
            source=ctx.source,
        )
    _count(step)
    return RenewalPublic.model_validate(renewal.model_dump())


async def list_renewals(ctx: Ctx, organisation_id: str, page: PageParams) -> Page[RenewalPublic]:
    """An organisation's renewals, latest first."""
    async with ctx.db.read() as session:
        await organisations.own(ctx, session, organisation_id, "see this organisation's renewals")
        return await paginate(  # type: ignore[no-any-return]
            session,
            repository.renewals_of(organisation_id),
            page,
            order_by=[col(Renewal.period_start).desc()],
            map=lambda r: RenewalPublic.model_validate(r.model_dump()),
        )


async def lapse_overdue(ctx: Ctx, today: date | None = None) -> list[str]:
    """Active members whose renewal is overdue past the grace period become lapsed (the scheduled scan)."""
    day = today or common.today()
    async with ctx.db.read() as session:
        candidates = await repository.overdue_candidates(session, day)
    lapsed = []
    for organisation_id, due, grace in candidates:
        grace_days = grace if grace is not None else ctx.settings.default_grace_days
        if not domain.renewal_overdue(due, grace_days, day):
            continue
        async with ctx.db.transaction() as session:
            org = await organisations.get(session, organisation_id)
            # Re-checked inside the unit of work: a renewal may have been paid meanwhile.
            if org.status != MembershipStatus.active or not domain.renewal_overdue(org.renewal_due, grace_days, day):
                continue
            step = _apply(ctx, session, org, LifecycleAction.lapse, reason=f"renewal due {org.renewal_due} unpaid")
        _count(step)
        lapsed.append(organisation_id)
    return lapsed


async def history(ctx: Ctx, organisation_id: str, page: PageParams) -> Page[StatusChangePublic]:
    """An organisation's lifecycle steps, oldest first."""
    async with ctx.db.read() as session:
        await organisations.own(ctx, session, organisation_id, "see this organisation's history")
        return await paginate(  # type: ignore[no-any-return]
            session,
            repository.history_of(organisation_id),
            page,
            order_by=[col(StatusChange.at)],
            map=lambda r: StatusChangePublic.model_validate({**fields(r), "at": as_utc(r.at)}),
        )


async def create_fee_plan(ctx: Ctx, data: FeePlanCreate) -> FeePlanPublic:
    """A new fee plan; names are unique."""
    ctx.require_staff("create a fee plan")
    async with ctx.db.transaction() as session:
        if await repository.plan_named(session, data.name):
            raise Conflict(f"a fee plan named {data.name!r} already exists")
        plan = FeePlan.model_validate(data.model_dump())
        session.add(plan)
    return FeePlanPublic.model_validate(plan.model_dump())


async def list_fee_plans(ctx: Ctx, page: PageParams) -> Page[FeePlanPublic]:
    """Fee plans by name."""
    ctx.require_member_or_staff("see the fee plans")
    async with ctx.db.read() as session:
        return await paginate(  # type: ignore[no-any-return]
            session,
            select(FeePlan),
            page,
            order_by=[col(FeePlan.name)],
            map=lambda p: FeePlanPublic.model_validate(p.model_dump()),
        )
