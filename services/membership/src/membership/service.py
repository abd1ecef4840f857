# Over 500 lines: the use cases of several aggregates (organisations, contacts, figures, fee plans,
# CSV import); the split into a package per aggregate is open work of the service-shape issue.
"""Use cases of the register: each one a unit of work (load, apply the rule, save, add outbox events)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy import String, and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from distretto_shared import csvsafe, metrics
from distretto_shared.context import Context, NotAllowed
from distretto_shared.contracts import membership as contracts
from distretto_shared.conventions import FROM_TEXT
from distretto_shared.db import contains_text
from distretto_shared.events import Event
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, DomainError, Invalid, NotFound, Page, PageParams, make_page
from membership import domain
from membership.config import Settings
from membership.domain import (
    IllegalTransition,
    LifecycleAction,
    MembershipStatus,
    OrganisationKind,
    Sector,
    SizeClass,
)
from membership.models import (
    ApproveRequest,
    Contact,
    ContactCreate,
    ContactDataExport,
    ContactPersonalData,
    ContactPublic,
    ContactUpdate,
    DistrictFiguresPublic,
    FeePlan,
    FeePlanCreate,
    FeePlanPublic,
    ImportResult,
    Organisation,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
    PublishedFigures,
    Renewal,
    RenewalCreate,
    RenewalPublic,
    StatusChange,
    StatusChangePublic,
    YearlyFigures,
    YearlyFiguresCreate,
    YearlyFiguresPublic,
    as_utc,
    utcnow,
)

# -- Domain metrics (the backbone's HTTP/outbox/consumer metrics come on top) --

MEMBERS = Gauge("distretto_membership_members", "Organisations in the register by status and kind", ["status", "kind"])
TRANSITIONS = Counter(
    "distretto_membership_transitions_total", "Lifecycle transitions applied", ["from_status", "to_status"]
)
PERSONAL_DATA_READERS = frozenset({"service:newsletter"})
"""Services that may read a contact's personal data (besides staff): the newsletter mails consenting contacts."""
PUBLIC_STATUSES = frozenset(
    s.value
    for s in (MembershipStatus.active, MembershipStatus.suspended, MembershipStatus.lapsed, MembershipStatus.left)
)
"""Organisations that are or were members: the register others see (applications are not public)."""
PRIVATE_ORGANISATION_FIELDS = frozenset({"latest_year", "size_class", "fee_plan_id", "renewal_due"})
"""Fields of an organisation only the organisation itself and staff see."""

IMPORT_ROWS = Counter("distretto_membership_import_rows_total", "CSV import rows by outcome", ["outcome"])
# At zero from the first scrape, for every legal transition and import outcome.
for _status, _action in domain.TRANSITIONS:
    TRANSITIONS.labels(_status.value, domain.TRANSITIONS[(_status, _action)].value)
metrics.zero(IMPORT_ROWS, ("accepted", "rejected"))


Ctx = Context[Settings]
"""What every use case receives: the caller, the database, the settings."""


def _settings(ctx: Ctx) -> Settings:
    return ctx.settings


def _today() -> date:
    return datetime.now(UTC).date()


# -- Shapes --------------------------------------------------------------------


def _profile(org: Organisation) -> contracts.OrganisationProfile:
    return contracts.OrganisationProfile(
        organisation_id=org.id,
        name=org.name,
        kind=str(org.kind),
        sectors=[str(s) for s in org.sectors],
        vat_number=org.vat_number,
        country=org.country,
        province=org.province,
        city=org.city,
        website=org.website,
        ateco_code=org.ateco_code,
        description=org.description,
        competences=list(org.competences),
        keywords=list(org.keywords),
        status=str(org.status),
        size_class=str(org.size_class) if org.size_class else None,
    )


def _fields(row: Any, names: Any = None) -> dict[str, Any]:
    """A table row's fields as a dict (``model_dump`` would warn: enum columns come back as str)."""
    return {name: getattr(row, name) for name in (names or type(row).model_fields)}


def _figures_public(fig: YearlyFigures, kind: str) -> YearlyFiguresPublic:
    return YearlyFiguresPublic(
        year=fig.year,
        staff=fig.staff,
        rd_staff=fig.rd_staff,
        turnover_eur=fig.turnover_eur,
        lab_m2=fig.lab_m2,
        patents=fig.patents,
        size_class=_size_class_for(kind, fig),
    )


def _org_public(ctx: Ctx, org: Organisation, latest: YearlyFigures | None = None) -> OrganisationPublic:
    """The organisation as ``ctx``'s caller may see it: in full for itself and staff, else the
    register's public fields (no figures, size class, fee plan, renewal date or open actions)."""
    status = MembershipStatus(org.status)
    if not ctx.acts_for(org.id):
        public = {name: value for name, value in _fields(org).items() if name not in PRIVATE_ORGANISATION_FIELDS}
        return OrganisationPublic.model_validate(
            {
                **public,
                "status_changed_at": as_utc(org.status_changed_at),
                "created_at": as_utc(org.created_at),
                "updated_at": as_utc(org.updated_at),
            }
        )
    return OrganisationPublic.model_validate(
        {
            **_fields(org),
            "status_changed_at": as_utc(org.status_changed_at),
            "created_at": as_utc(org.created_at),
            "updated_at": as_utc(org.updated_at),
            "latest_figures": _figures_public(latest, org.kind) if latest else None,
            "allowed_actions": domain.allowed_actions(status),
        }
    )


def _contact_public(contact: Contact) -> ContactPublic:
    data = _fields(contact)
    for name in ("consent_newsletter_at", "consent_data_processing_at", "erased_at", "created_at", "updated_at"):
        data[name] = as_utc(data[name])
    return ContactPublic.model_validate(data)


def _contact_reference(contact: Contact) -> contracts.ContactReference:
    # What goes on the shared topic: no name, email or phone (see the contract).
    return contracts.ContactReference(
        contact_id=contact.id,
        organisation_id=contact.organisation_id,
        email_sha256=domain.email_sha256(contact.email or ""),
        consent_newsletter=contact.consent_newsletter,
        consent_data_processing=contact.consent_data_processing,
        language=contact.language,
    )


def _size_class_for(kind: str, fig: YearlyFigures | None) -> SizeClass | None:
    # The EU definition is about enterprises: universities, hospitals … get none.
    if fig is None or kind != OrganisationKind.company:
        return None
    return domain.size_class(fig.staff, fig.turnover_eur)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )


# -- Loading, and who may see what (docs/service-guide.md, "Authorisation") ----------------
#
# Every use case loads through one of these, so the rule sits next to the query:
# - ``_visible``: the register's public part. An organisation that is or was a member is
#   public; an application (applied, rejected) only to itself and staff — 404 to others.
# - ``_own``: an organisation's private records (figures, renewals, history, contacts, its
#   changes): the organisation's own members and staff; 403 to others (it is public, this is not).
# - ``_for_staff``: lifecycle decisions and bulk work: staff only (403).
# - ``_contact_of``: a person: the organisation's own members and staff; 404 to others.


async def _organisation(session: AsyncSession, organisation_id: str) -> Organisation:
    """Load without a caller (the service's own scans)."""
    org = await session.get(Organisation, organisation_id)
    if org is None:
        raise NotFound(f"organisation {organisation_id} does not exist")
    return org


async def _visible(ctx: Ctx, session: AsyncSession, organisation_id: str) -> Organisation:
    """The organisation, when the caller may know it exists (404 otherwise)."""
    org = await session.get(Organisation, organisation_id)
    if org is None or not (ctx.acts_for(org.id) or org.status in PUBLIC_STATUSES):
        raise NotFound(f"organisation {organisation_id} does not exist")
    return org


async def _own(ctx: Ctx, session: AsyncSession, organisation_id: str, what: str) -> Organisation:
    """The organisation, when the caller may see and change its private records (403 otherwise)."""
    org = await _visible(ctx, session, organisation_id)
    ctx.require_private_of(org.id, what)
    return org


async def _for_staff(ctx: Ctx, session: AsyncSession, organisation_id: str, what: str) -> Organisation:
    """The organisation, for a staff decision (403 for everyone else)."""
    ctx.require_staff(what)
    return await _organisation(session, organisation_id)


async def _contact_of(ctx: Ctx, session: AsyncSession, contact_id: str) -> Contact:
    """A person, for the people of their own organisation and staff (404 for everyone else)."""
    contact = await session.get(Contact, contact_id)
    if contact is None or not ctx.acts_for(contact.organisation_id):
        raise NotFound(f"contact {contact_id} does not exist")
    return contact


async def _latest_figures(session: AsyncSession, org: Organisation) -> YearlyFigures | None:
    if org.latest_year is None:
        return None
    return (
        await session.execute(
            select(YearlyFigures).where(
                col(YearlyFigures.organisation_id) == org.id, col(YearlyFigures.year) == org.latest_year
            )
        )
    ).scalar_one_or_none()


async def _vat_holder(session: AsyncSession, vat: str | None, exclude_id: str | None = None) -> Organisation | None:
    if not vat:
        return None
    query = select(Organisation).where(col(Organisation.vat_number) == vat)
    if exclude_id:
        query = query.where(col(Organisation.id) != exclude_id)
    return (await session.execute(query.limit(1))).scalar_one_or_none()


# -- Organisations -------------------------------------------------------------


async def create_organisation(ctx: Ctx, data: OrganisationCreate) -> OrganisationPublic:
    """Enter an organisation in the register as an applicant."""
    ctx.require_staff("register an organisation")
    async with ctx.db.transaction() as session:
        holder = await _vat_holder(session, data.vat_number)
        if holder:
            raise Conflict(f"VAT number {data.vat_number} is already registered to {holder.name!r} ({holder.id})")
        org = Organisation.model_validate(data.model_dump())
        session.add(org)
        add_event(
            session, contracts.OrganisationRegistered(organisation_id=org.id, profile=_profile(org)), source=ctx.source
        )
    return _org_public(ctx, org)


async def get_organisation(ctx: Ctx, organisation_id: str) -> OrganisationPublic:
    """One organisation with its latest figures."""
    async with ctx.db.read() as session:
        org = await _visible(ctx, session, organisation_id)
        return _org_public(ctx, org, await _latest_figures(session, org))


@dataclass(frozen=True)
class OrganisationFilter:
    """Filters of the organisation list and the CSV export."""

    kind: OrganisationKind | None = None
    sector: Sector | None = None
    status: MembershipStatus | None = None
    province: str | None = None
    size_class: SizeClass | None = None
    q: str | None = None

    def conditions(self) -> list[Any]:
        """SQL conditions, portable between SQLite and PostgreSQL."""
        where: list[Any] = []
        if self.kind:
            where.append(col(Organisation.kind) == self.kind.value)
        if self.status:
            where.append(col(Organisation.status) == self.status.value)
        if self.size_class:
            where.append(col(Organisation.size_class) == self.size_class.value)
        if self.province:
            where.append(func.upper(Organisation.province) == self.province.strip().upper())
        if self.sector:
            # sectors is a JSON list of enum values: its text holds "<value>" with the quotes.
            where.append(cast(Organisation.sectors, String).like(f'%"{self.sector.value}"%'))
        if self.q and self.q.strip():
            where.append(
                or_(
                    *(
                        contains_text(column, self.q)
                        for column in (
                            Organisation.name,
                            Organisation.description,
                            Organisation.city,
                            cast(Organisation.keywords, String),
                            cast(Organisation.competences, String),
                        )
                    )
                )
            )
        return where


def _order_by(order: domain.OrganisationOrder) -> list[Any]:
    """ORDER BY for the register: the column (empty values last in both directions), then name, then id.

    The name and id after the column make the order total, so pages never repeat or skip a row.
    """
    name = func.lower(Organisation.name)
    if order.column == "name":
        return [name.desc() if order.descending else name, col(Organisation.id)]
    column = getattr(Organisation, order.column)
    empty = column.is_(None)
    if order.column == "province":
        empty = or_(empty, column == "")
        column = func.upper(column)
    return [empty, column.desc() if order.descending else column, name, col(Organisation.id)]


async def list_organisations(
    ctx: Ctx,
    flt: OrganisationFilter,
    page: PageParams,
    order: domain.OrganisationOrder = domain.OrganisationOrder.name,
) -> Page[OrganisationPublic]:
    """One page of the register in the given order (others' applications left out)."""
    where = flt.conditions()
    if not ctx.sees_everything:
        own = ctx.own_organisation()
        public = col(Organisation.status).in_(sorted(PUBLIC_STATUSES))
        where.append(or_(public, col(Organisation.id) == own) if own else public)
    async with ctx.db.read() as session:
        total = (await session.execute(select(func.count()).select_from(Organisation).where(*where))).scalar_one()
        orgs = (
            (
                await session.execute(
                    select(Organisation).where(*where).order_by(*_order_by(order)).limit(page.limit).offset(page.offset)
                )
            )
            .scalars()
            .all()
        )
        latest = await _latest_figures_of(session, orgs)
    return make_page([_org_public(ctx, o, latest.get(o.id)) for o in orgs], total, page)


async def _latest_figures_of(session: AsyncSession, orgs: Sequence[Organisation]) -> dict[str, YearlyFigures]:
    wanted = {o.id: o.latest_year for o in orgs if o.latest_year is not None}
    if not wanted:
        return {}
    rows = (
        (await session.execute(select(YearlyFigures).where(col(YearlyFigures.organisation_id).in_(list(wanted)))))
        .scalars()
        .all()
    )
    return {f.organisation_id: f for f in rows if wanted.get(f.organisation_id) == f.year}


async def update_organisation(ctx: Ctx, organisation_id: str, patch: OrganisationUpdate) -> OrganisationPublic:
    """Change an organisation's data; publishes OrganisationUpdated only when something changed."""
    changes = patch.model_dump(exclude_unset=True)
    async with ctx.db.transaction() as session:
        org = await _own(ctx, session, organisation_id, "change this organisation")
        current = _fields(org, OrganisationCreate.model_fields)
        try:
            # Re-validate the whole record: a new country changes what a valid VAT number is.
            merged = OrganisationCreate.model_validate({**current, **changes})
        except ValidationError as exc:
            raise Invalid(_validation_message(exc)) from exc
        new = merged.model_dump(mode="json")
        if new == OrganisationCreate.model_validate(current).model_dump(mode="json"):
            return _org_public(ctx, org, await _latest_figures(session, org))
        holder = await _vat_holder(session, merged.vat_number, exclude_id=org.id)
        if holder:
            raise Conflict(f"VAT number {merged.vat_number} is already registered to {holder.name!r} ({holder.id})")
        for name, value in new.items():
            setattr(org, name, value)
        latest = await _latest_figures(session, org)
        size = _size_class_for(org.kind, latest)
        org.size_class = size
        org.updated_at = utcnow()
        add_event(
            session, contracts.OrganisationUpdated(organisation_id=org.id, profile=_profile(org)), source=ctx.source
        )
    return _org_public(ctx, org, latest)


# -- Yearly figures ------------------------------------------------------------


async def _store_figures(
    session: AsyncSession, org: Organisation, year: int, data: YearlyFiguresCreate
) -> YearlyFigures:
    """Write a year's figures (the whole record); the latest year and the size class follow.

    The caller publishes ``OrganisationUpdated`` when ``org.size_class`` changed (the profile
    other services keep carries it).
    """
    fig = (
        await session.execute(
            select(YearlyFigures).where(col(YearlyFigures.organisation_id) == org.id, col(YearlyFigures.year) == year)
        )
    ).scalar_one_or_none()
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
        size = _size_class_for(org.kind, fig)
        if size != org.size_class:
            org.size_class = size
            org.updated_at = utcnow()
    return fig


async def set_figures(ctx: Ctx, organisation_id: str, year: int, data: YearlyFiguresCreate) -> YearlyFiguresPublic:
    """Record (or correct) an organisation's figures for a year; the size class follows."""
    async with ctx.db.transaction() as session:
        org = await _own(ctx, session, organisation_id, "record this organisation's figures")
        size_before = org.size_class
        fig = await _store_figures(session, org, year, data)
        if org.size_class != size_before:
            add_event(
                session, contracts.OrganisationUpdated(organisation_id=org.id, profile=_profile(org)), source=ctx.source
            )
    return _figures_public(fig, org.kind)


async def list_figures(ctx: Ctx, organisation_id: str) -> list[YearlyFiguresPublic]:
    """Every year's figures of an organisation, latest first."""
    async with ctx.db.read() as session:
        org = await _own(ctx, session, organisation_id, "see this organisation's figures")
        rows = (
            (
                await session.execute(
                    select(YearlyFigures)
                    .where(col(YearlyFigures.organisation_id) == org.id)
                    .order_by(col(YearlyFigures.year).desc())
                )
            )
            .scalars()
            .all()
        )
        return [_figures_public(f, org.kind) for f in rows]


# -- Lifecycle -------------------------------------------------------------------


async def _plan(session: AsyncSession, fee_plan_id: str | None) -> FeePlan | None:
    if fee_plan_id is None:
        return None
    plan = await session.get(FeePlan, fee_plan_id)
    if plan is None:
        raise Invalid(f"fee plan {fee_plan_id} does not exist")
    return plan


def _apply(
    ctx: Ctx,
    session: AsyncSession,
    org: Organisation,
    action: LifecycleAction,
    reason: str = "",
) -> tuple[MembershipStatus, MembershipStatus]:
    """Move ``org`` along the lifecycle, record the step and its event. Raises Conflict when illegal."""
    before = MembershipStatus(org.status)
    try:
        after = domain.next_status(before, action)
    except IllegalTransition as exc:
        raise Conflict(str(exc), details={"status": before.value, "action": action.value}) from exc
    today = _today()
    session.add(StatusChange(organisation_id=org.id, action=action, from_status=before, to_status=after, reason=reason))
    if after == before:
        return before, after
    org.status = after
    org.status_changed_at = org.updated_at = utcnow()
    event: Event
    if after is MembershipStatus.active:
        event = contracts.OrganisationJoined(
            organisation_id=org.id,
            profile=_profile(org),
            first_join=before is MembershipStatus.applied,
            joined_on=org.joined_on or today,
        )
    elif after is MembershipStatus.rejected:
        event = contracts.OrganisationRejected(organisation_id=org.id, reason=reason)
    elif after is MembershipStatus.suspended:
        event = contracts.OrganisationSuspended(organisation_id=org.id, reason=reason)
    elif after is MembershipStatus.lapsed:
        event = contracts.OrganisationLapsed(organisation_id=org.id, renewal_due=org.renewal_due)
    else:
        event = contracts.OrganisationLeft(organisation_id=org.id, reason=reason)
    add_event(session, event, source=ctx.source)
    return before, after


def _count(step: tuple[MembershipStatus, MembershipStatus]) -> None:
    if step[0] != step[1]:
        TRANSITIONS.labels(step[0].value, step[1].value).inc()


async def approve(ctx: Ctx, organisation_id: str, request: ApproveRequest) -> OrganisationPublic:
    """applied → active: the organisation becomes a member; its first renewal falls due one period later."""
    async with ctx.db.transaction() as session:
        org = await _for_staff(ctx, session, organisation_id, "approve an application")
        joined_on = request.joined_on or _today()
        if MembershipStatus(org.status) is MembershipStatus.applied:
            plan = await _plan(session, request.fee_plan_id)
            org.fee_plan_id = plan.id if plan else None
            org.joined_on = joined_on
            org.renewal_due = domain.add_months(joined_on, _period_months(ctx, plan))
        step = _apply(ctx, session, org, LifecycleAction.approve)
        latest = await _latest_figures(session, org)
    _count(step)
    return _org_public(ctx, org, latest)


async def change_status(
    ctx: Ctx, organisation_id: str, action: LifecycleAction, reason: str = ""
) -> OrganisationPublic:
    """reject / suspend / reinstate / lapse (staff) / leave (the organisation itself, or staff)."""
    async with ctx.db.transaction() as session:
        if action is LifecycleAction.leave:
            org = await _own(ctx, session, organisation_id, "end this organisation's membership")
        else:
            org = await _for_staff(ctx, session, organisation_id, f"{action.value} an organisation")
        step = _apply(ctx, session, org, action, reason)
        latest = await _latest_figures(session, org)
    _count(step)
    return _org_public(ctx, org, latest)


def _period_months(ctx: Ctx, plan: FeePlan | None) -> int:
    return plan.period_months if plan else _settings(ctx).default_period_months


async def renew(ctx: Ctx, organisation_id: str, request: RenewalCreate) -> RenewalPublic:
    """Record a paid renewal: extends an active membership, brings a lapsed one back.

    Staff only: a renewal records a payment the foundation received and moves the lifecycle
    (lapsed → active); a member cannot certify its own payment.
    """
    async with ctx.db.transaction() as session:
        org = await _for_staff(ctx, session, organisation_id, "record a paid renewal")
        status = MembershipStatus(org.status)
        plan = await session.get(FeePlan, org.fee_plan_id) if org.fee_plan_id else None
        paid_on = request.paid_on or _today()
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
        await _own(ctx, session, organisation_id, "see this organisation's renewals")
        where = col(Renewal.organisation_id) == organisation_id
        total = (await session.execute(select(func.count()).select_from(Renewal).where(where))).scalar_one()
        rows = (
            (
                await session.execute(
                    select(Renewal)
                    .where(where)
                    .order_by(col(Renewal.period_start).desc())
                    .limit(page.limit)
                    .offset(page.offset)
                )
            )
            .scalars()
            .all()
        )
    return make_page([RenewalPublic.model_validate(r.model_dump()) for r in rows], total, page)


async def lapse_overdue(ctx: Ctx, today: date | None = None) -> list[str]:
    """Active members whose renewal is overdue past the grace period become lapsed (the scheduled scan)."""
    today = today or _today()
    async with ctx.db.read() as session:
        candidates = (
            await session.execute(
                select(col(Organisation.id), col(Organisation.renewal_due), col(FeePlan.grace_days))
                .outerjoin(FeePlan, col(FeePlan.id) == Organisation.fee_plan_id)
                .where(col(Organisation.status) == MembershipStatus.active.value, col(Organisation.renewal_due) < today)
            )
        ).all()
    lapsed = []
    for organisation_id, due, grace in candidates:
        grace_days = grace if grace is not None else _settings(ctx).default_grace_days
        if not domain.renewal_overdue(due, grace_days, today):
            continue
        async with ctx.db.transaction() as session:
            org = await _organisation(session, organisation_id)
            # Re-checked inside the unit of work: a renewal may have been paid meanwhile.
            if org.status != MembershipStatus.active or not domain.renewal_overdue(org.renewal_due, grace_days, today):
                continue
            step = _apply(ctx, session, org, LifecycleAction.lapse, reason=f"renewal due {org.renewal_due} unpaid")
        _count(step)
        lapsed.append(organisation_id)
    return lapsed


async def history(ctx: Ctx, organisation_id: str, page: PageParams) -> Page[StatusChangePublic]:
    """An organisation's lifecycle steps, oldest first."""
    async with ctx.db.read() as session:
        await _own(ctx, session, organisation_id, "see this organisation's history")
        where = col(StatusChange.organisation_id) == organisation_id
        total = (await session.execute(select(func.count()).select_from(StatusChange).where(where))).scalar_one()
        rows = (
            (
                await session.execute(
                    select(StatusChange)
                    .where(where)
                    .order_by(col(StatusChange.at))
                    .limit(page.limit)
                    .offset(page.offset)
                )
            )
            .scalars()
            .all()
        )
    return make_page([StatusChangePublic.model_validate({**_fields(r), "at": as_utc(r.at)}) for r in rows], total, page)


# -- Fee plans -----------------------------------------------------------------


async def create_fee_plan(ctx: Ctx, data: FeePlanCreate) -> FeePlanPublic:
    """A new fee plan; names are unique."""
    ctx.require_staff("create a fee plan")
    async with ctx.db.transaction() as session:
        if (await session.execute(select(FeePlan).where(col(FeePlan.name) == data.name))).scalar_one_or_none():
            raise Conflict(f"a fee plan named {data.name!r} already exists")
        plan = FeePlan.model_validate(data.model_dump())
        session.add(plan)
    return FeePlanPublic.model_validate(plan.model_dump())


async def list_fee_plans(ctx: Ctx, page: PageParams) -> Page[FeePlanPublic]:
    """Fee plans by name."""
    ctx.require_member_or_staff("see the fee plans")
    async with ctx.db.read() as session:
        total = (await session.execute(select(func.count()).select_from(FeePlan))).scalar_one()
        rows = (
            (await session.execute(select(FeePlan).order_by(FeePlan.name).limit(page.limit).offset(page.offset)))
            .scalars()
            .all()
        )
    return make_page([FeePlanPublic.model_validate(p.model_dump()) for p in rows], total, page)


# -- Contacts --------------------------------------------------------------------


async def _email_taken(session: AsyncSession, organisation_id: str, email: str, exclude_id: str | None = None) -> bool:
    query = select(col(Contact.id)).where(
        col(Contact.organisation_id) == organisation_id, func.lower(Contact.email) == email.strip().lower()
    )
    if exclude_id:
        query = query.where(col(Contact.id) != exclude_id)
    return (await session.execute(query.limit(1))).first() is not None


async def add_contact(ctx: Ctx, organisation_id: str, data: ContactCreate) -> ContactPublic:
    """Add a person to an organisation, recording when and where each consent was given."""
    async with ctx.db.transaction() as session:
        await _own(ctx, session, organisation_id, "add contacts to this organisation")
        if await _email_taken(session, organisation_id, data.email):
            raise Conflict(f"{data.email} is already a contact of this organisation")
        now = utcnow()
        contact = Contact(organisation_id=organisation_id, **data.model_dump(exclude={"consent_source"}))
        if data.consent_newsletter:
            contact.consent_newsletter_at, contact.consent_newsletter_source = now, data.consent_source
        if data.consent_data_processing:
            contact.consent_data_processing_at, contact.consent_data_processing_source = now, data.consent_source
        session.add(contact)
        add_event(
            session,
            contracts.ContactAdded(
                contact_id=contact.id, organisation_id=organisation_id, contact=_contact_reference(contact)
            ),
            source=ctx.source,
        )
    return _contact_public(contact)


async def get_contact(ctx: Ctx, contact_id: str) -> ContactPublic:
    """One contact."""
    async with ctx.db.read() as session:
        return _contact_public(await _contact_of(ctx, session, contact_id))


async def export_contact(ctx: Ctx, contact_id: str) -> ContactDataExport:
    """Everything the register holds about one person, as JSON (GDPR art. 15 access, art. 20 portability).

    Staff, or a member for its own organisation's contacts (404 for everyone else, as for the
    contact itself). An erased contact's export shows what is left: ids and dates, nothing personal.
    """
    async with ctx.db.read() as session:
        contact = await _contact_of(ctx, session, contact_id)
        org = await _organisation(session, contact.organisation_id)
    reference = _contact_reference(contact)
    shared: dict[str, Any] = (
        {}
        if contact.erased_at is not None
        else {
            "topic": contracts.CONTACT_TOPIC.name,
            "fields": reference.model_dump(mode="json"),
            "note": "ids, consents, language and the SHA-256 of the lower-cased email address; "
            "the newsletter service reads name and address from the register when it mails a consenting contact",
        }
    )
    return ContactDataExport(
        exported_at=utcnow(),
        controller="Distretto membership register",
        contact=_contact_public(contact),
        organisation={"id": org.id, "name": org.name},
        shared_with_other_services=shared,
    )


async def contact_personal_data(ctx: Ctx, contact_id: str) -> ContactPersonalData:
    """A contact's personal data for a service that needs it (the newsletter); 404 once erased.

    Staff and the services in ``PERSONAL_DATA_READERS`` only (403 for everyone else, members of
    the contact's organisation included: they read their contacts through ``GET /contacts/{id}``).
    """
    if not (ctx.sees_everything or ctx.principal.id in PERSONAL_DATA_READERS):
        raise NotAllowed("a contact's personal data is for the newsletter service and staff only")
    async with ctx.db.read() as session:
        contact = await session.get(Contact, contact_id)
        if contact is None or contact.erased_at is not None:
            raise NotFound(f"contact {contact_id} does not exist (or was erased)")
        return ContactPersonalData(
            contact_id=contact.id,
            organisation_id=contact.organisation_id,
            first_name=contact.first_name,
            last_name=contact.last_name,
            email=contact.email or "",
            phone=contact.phone,
            role=contact.role,
            language=contact.language,
            consent_newsletter=contact.consent_newsletter,
        )


async def list_contacts(
    ctx: Ctx,
    page: PageParams,
    *,
    organisation_id: str | None = None,
    consent_newsletter: bool | None = None,
) -> Page[ContactPublic]:
    """Contacts (of one organisation, or all), erased ones excluded; a member sees only its own."""
    where: list[Any] = [col(Contact.erased_at).is_(None)]
    async with ctx.db.read() as session:
        if organisation_id is not None:
            await _own(ctx, session, organisation_id, "see this organisation's contacts")
            where.append(col(Contact.organisation_id) == organisation_id)
        elif not ctx.sees_everything:
            ctx.require_member_or_staff("list contacts")
            where.append(col(Contact.organisation_id) == ctx.own_organisation())
        if consent_newsletter is not None:
            where.append(col(Contact.consent_newsletter) == consent_newsletter)
        total = (await session.execute(select(func.count()).select_from(Contact).where(*where))).scalar_one()
        rows = (
            (
                await session.execute(
                    select(Contact)
                    .where(*where)
                    .order_by(Contact.last_name, Contact.first_name, Contact.id)
                    .limit(page.limit)
                    .offset(page.offset)
                )
            )
            .scalars()
            .all()
        )
    return make_page([_contact_public(c) for c in rows], total, page)


async def update_contact(ctx: Ctx, contact_id: str, patch: ContactUpdate) -> ContactPublic:
    """Change a person's data or consent; a consent change records its new time and source."""
    changes = patch.model_dump(exclude_unset=True, exclude={"consent_source"})
    async with ctx.db.transaction() as session:
        contact = await _contact_of(ctx, session, contact_id)
        if contact.erased_at is not None:
            raise Conflict(f"contact {contact_id} was erased")
        for required in (
            "first_name",
            "last_name",
            "email",
            "role",
            "language",
            "consent_newsletter",
            "consent_data_processing",
        ):
            if required in changes and changes[required] is None:
                raise Invalid(f"{required} cannot be null")
        if "email" in changes and await _email_taken(session, contact.organisation_id, changes["email"], contact.id):
            raise Conflict(f"{changes['email']} is already a contact of this organisation")
        changed = {k: v for k, v in changes.items() if getattr(contact, k) != v}
        if not changed:
            return _contact_public(contact)
        now = utcnow()
        for name, value in changed.items():
            setattr(contact, name, value)
        for consent in ("consent_newsletter", "consent_data_processing"):
            if consent in changed:
                setattr(contact, f"{consent}_at", now)
                setattr(contact, f"{consent}_source", patch.consent_source)
        contact.updated_at = now
        add_event(
            session,
            contracts.ContactUpdated(
                contact_id=contact.id, organisation_id=contact.organisation_id, contact=_contact_reference(contact)
            ),
            source=ctx.source,
        )
    return _contact_public(contact)


async def erase_contact(ctx: Ctx, contact_id: str) -> ContactPublic:
    """GDPR erasure: remove the person's data and tell the other services (by id and email hash)."""
    async with ctx.db.transaction() as session:
        contact = await _contact_of(ctx, session, contact_id)
        if contact.erased_at is not None:
            raise Conflict(f"contact {contact_id} was already erased")
        digest = domain.email_sha256(contact.email or "")
        now = utcnow()
        contact.first_name = contact.last_name = contact.role = ""
        contact.email = contact.phone = None
        contact.consent_newsletter = contact.consent_data_processing = False
        contact.consent_newsletter_at = contact.consent_data_processing_at = None
        contact.consent_newsletter_source = contact.consent_data_processing_source = None
        contact.erased_at = contact.updated_at = now
        ctx.db.request_scrub(session)
        add_event(
            session,
            contracts.ContactErased(
                contact_id=contact.id, organisation_id=contact.organisation_id, email_sha256=digest
            ),
            source=ctx.source,
        )
    return _contact_public(contact)


# -- District figures ------------------------------------------------------------


async def compute_figures(ctx: Ctx) -> domain.DistrictFigures:
    """The district's live aggregates (also refreshes the members gauges)."""
    async with ctx.db.read() as session:
        rows = (
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
    members = [
        domain.MemberSnapshot(
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
    figures = domain.district_figures(members)
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
        last = await session.get(PublishedFigures, "district")
        if last is not None and last.payload == payload:
            return False
        now = utcnow()
        if last is None:
            session.add(PublishedFigures(key="district", payload=payload, published_at=now))
        else:
            last.payload, last.published_at = payload, now
        add_event(session, contracts.DistrictFiguresChanged(computed_at=now, **payload), source=ctx.source)
    return True


# -- CSV import and export -------------------------------------------------------

CSV_COLUMNS = [
    "name",
    "kind",
    "sectors",
    "address",
    "postcode",
    "city",
    "province",
    "country",
    "website",
    "vat_number",
    "ateco_code",
    "description",
    "competences",
    "keywords",
]
LIST_COLUMNS = {"sectors", "competences", "keywords"}
FIGURE_COLUMNS = ["year", "staff", "rd_staff", "turnover_eur", "lab_m2", "patents"]
EXPORT_ONLY_COLUMNS = ["id", "status", "size_class"]
"""Written by the export. On import, a row whose ``id`` names an organisation of the register
updates it in place (so an export, edited, imports back); status and size class are ignored
(the lifecycle and the figures decide them)."""
REQUIRED_COLUMNS = ["name", "kind"]
MAX_IMPORT_ROWS = 10_000


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _split_list(cell: str) -> list[str]:
    return [part.strip() for part in cell.replace(";", "|").split("|") if part.strip()]


@dataclass
class _ParsedRow:
    line: int
    organisation: OrganisationCreate
    year: int | None
    figures: YearlyFiguresCreate | None
    id: str | None = None
    """The organisation to update (the export's ``id`` column); None: a new one."""
    columns: frozenset[str] = frozenset()
    """The organisation columns the file has (an update changes these, keeps the others)."""


def _parse_csv(text: str) -> tuple[list[_ParsedRow], list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows, per-row errors and formula warnings; raises DomainError (400) when the file is not a usable CSV."""
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise DomainError("the CSV file is empty: the first line must name the columns")
        columns = [h.strip().lower() for h in header]
        known = set(CSV_COLUMNS) | set(FIGURE_COLUMNS) | set(EXPORT_ONLY_COLUMNS)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise DomainError(
                f"unknown column(s) {', '.join(map(repr, unknown))}; "
                f"known columns: {', '.join(CSV_COLUMNS + FIGURE_COLUMNS)}"
            )
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise DomainError(f"column(s) {', '.join(duplicated)} appear more than once")
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DomainError(f"missing required column(s): {', '.join(missing)}")
        rows: list[_ParsedRow] = []
        errors: list[dict[str, Any]] = []
        warnings: list[dict[str, Any]] = []
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(rows) + len(errors) >= MAX_IMPORT_ROWS:
                raise DomainError(f"the file has more than {MAX_IMPORT_ROWS} rows; split it")
            if len(cells) != len(columns):
                errors.append({"line": line, "errors": [f"{len(cells)} fields, but the header has {len(columns)}"]})
                continue
            warnings.extend(w.as_dict() for w in csvsafe.formula_warnings(line, columns, cells))
            record = {c: v.strip() for c, v in zip(columns, cells, strict=True) if v.strip()}
            row_errors: list[str] = []
            org_data: dict[str, Any] = {
                c: (_split_list(v) if c in LIST_COLUMNS else v) for c, v in record.items() if c in CSV_COLUMNS
            }
            organisation = figures = None
            try:
                organisation = OrganisationCreate.model_validate(org_data)
            except ValidationError as exc:
                row_errors.append(_validation_message(exc))
            year: int | None = None
            fig_data = {c: record[c] for c in FIGURE_COLUMNS if c in record and c != "year"}
            if "year" in record or fig_data:
                # A row's figures are that year's whole record: a blank cell counts as 0 (staff is required).
                fig_data = {c: "0" for c in FIGURE_COLUMNS if c not in ("year", "staff")} | fig_data
                try:
                    year = int(record.get("year", ""))
                    if not 1900 <= year <= 2100:
                        raise ValueError
                except ValueError:
                    row_errors.append(f"year: {record.get('year', '')!r} is not a year between 1900 and 2100")
                try:
                    figures = YearlyFiguresCreate.model_validate(fig_data, context=FROM_TEXT)  # CSV cells are text
                except ValidationError as exc:
                    row_errors.append(_validation_message(exc))
            if row_errors or organisation is None:
                errors.append({"line": line, "errors": row_errors})
            else:
                rows.append(
                    _ParsedRow(
                        line,
                        organisation,
                        year,
                        figures,
                        id=record.get("id"),
                        columns=frozenset(c for c in columns if c in CSV_COLUMNS),
                    )
                )
    except csv.Error as exc:
        raise DomainError(f"malformed CSV at line {reader.line_num}: {exc}") from exc
    if not rows and not errors:
        raise DomainError("the CSV file has a header but no rows")
    return rows, errors, warnings


async def import_csv(ctx: Ctx, raw: bytes) -> ImportResult:
    """Import organisations (and optionally one year's figures each) from CSV: all rows or none.

    A row with an ``id`` (the export's first column) updates that organisation: the columns the
    file has replace its values, the others stay; a row without one creates an organisation.
    """
    ctx.require_staff("import organisations")
    if len(raw) > _settings(ctx).import_max_bytes:
        raise DomainError(f"the file is larger than {_settings(ctx).import_max_bytes} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DomainError(f"the file is not UTF-8 text (byte {exc.start})") from exc
    if "\x00" in text:
        raise DomainError("the file is not text (it contains NUL bytes)")
    rows, errors, warnings = _parse_csv(text)
    total_rows = len(rows) + len(errors)
    async with ctx.db.transaction() as session:
        existing: dict[int, Organisation] = {}
        merged: dict[int, OrganisationCreate] = {}
        seen_vat: dict[str, int] = {}
        seen_id: dict[str, int] = {}
        for row in rows:
            if row.id is not None:
                if row.id in seen_id:
                    errors.append({"line": row.line, "errors": [f"id: {row.id} repeats line {seen_id[row.id]}"]})
                    continue
                seen_id[row.id] = row.line
                org = await session.get(Organisation, row.id)
                if org is None:
                    # Another installation's export: the organisation is created with its id.
                    if not _is_uuid(row.id):
                        errors.append({"line": row.line, "errors": [f"id: {row.id!r} is not an organisation id"]})
                    continue
                current = _fields(org, OrganisationCreate.model_fields)
                given = row.organisation.model_dump(include=set(row.columns))
                try:
                    merged[row.line] = OrganisationCreate.model_validate({**current, **given})
                except ValidationError as exc:
                    errors.append({"line": row.line, "errors": [_validation_message(exc)]})
                    continue
                existing[row.line] = org
            vat = merged[row.line].vat_number if row.line in merged else row.organisation.vat_number
            if not vat:
                continue
            if vat in seen_vat:
                errors.append({"line": row.line, "errors": [f"vat_number: {vat} repeats line {seen_vat[vat]}"]})
                continue
            seen_vat[vat] = row.line
            holder = await _vat_holder(session, vat, exclude_id=row.id)
            if holder:
                errors.append(
                    {"line": row.line, "errors": [f"vat_number: {vat} is already registered to {holder.name!r}"]}
                )
        if errors:
            errors.sort(key=lambda e: e["line"])
            IMPORT_ROWS.labels("rejected").inc(len(errors))
            shown = "; ".join(f"line {e['line']}: {', '.join(e['errors'])}" for e in errors[:10])
            more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
            raise Invalid(
                f"{len(errors)} of {total_rows} rows have errors; nothing was imported. {shown}{more}",
                details=errors,
            )
        ids: list[str] = []
        updated = 0
        for row in rows:
            if row.line in existing:
                org = existing[row.line]
                before = _profile(org)
                for name, value in merged[row.line].model_dump(mode="json").items():
                    setattr(org, name, value)
                if row.figures is not None and row.year is not None:
                    await _store_figures(session, org, row.year, row.figures)
                org.size_class = _size_class_for(org.kind, await _latest_figures(session, org))
                if _profile(org) != before:
                    org.updated_at = utcnow()
                    add_event(
                        session,
                        contracts.OrganisationUpdated(organisation_id=org.id, profile=_profile(org)),
                        source=ctx.source,
                    )
                updated += 1
                ids.append(org.id)
                continue
            org = Organisation.model_validate({**row.organisation.model_dump(), **({"id": row.id} if row.id else {})})
            if row.figures is not None and row.year is not None:
                org.latest_year = row.year
                fig = YearlyFigures(organisation_id=org.id, year=row.year, **row.figures.model_dump())
                org.size_class = _size_class_for(org.kind, fig)
                session.add(fig)
            session.add(org)
            add_event(
                session,
                contracts.OrganisationRegistered(organisation_id=org.id, profile=_profile(org)),
                source=ctx.source,
            )
            ids.append(org.id)
    IMPORT_ROWS.labels("accepted").inc(len(ids))
    return ImportResult(
        imported=len(ids), created=len(ids) - updated, updated=updated, organisation_ids=ids, warnings=warnings
    )


async def export_csv(ctx: Ctx, flt: OrganisationFilter) -> str:
    """The organisations matching ``flt`` as CSV (the import's columns, plus id, status and latest figures)."""
    ctx.require_staff("export the register")
    async with ctx.db.read() as session:
        orgs = (
            (
                await session.execute(
                    select(Organisation).where(*flt.conditions()).order_by(Organisation.name, Organisation.id)
                )
            )
            .scalars()
            .all()
        )
        latest = await _latest_figures_of(session, orgs)
    out = io.StringIO()
    writer = csvsafe.SafeWriter(out, lineterminator="\n")
    writer.writerow(EXPORT_ONLY_COLUMNS + CSV_COLUMNS + FIGURE_COLUMNS)
    for org in orgs:
        data = _fields(org)
        fig = latest.get(org.id)
        writer.writerow(
            [data["id"], data["status"], data["size_class"] or ""]
            + ["|".join(map(str, data[c])) if c in LIST_COLUMNS else (data[c] or "") for c in CSV_COLUMNS]
            + ([fig.year, fig.staff, fig.rd_staff, fig.turnover_eur, fig.lab_m2, fig.patents] if fig else [""] * 6)
        )
    return out.getvalue()
