# Over 500 lines: the campaign aggregate's use cases (edit, audience, start with its render check,
# schedule, finish, test sends, the ledger's views); each is short, and they share the campaign's loaders.
"""Use cases of campaigns: edit, audience, lifecycle (start, schedule, finish), test sends, the delivery ledger."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, func, select

from distretto_shared.contracts import newsletter as contracts
from distretto_shared.conventions import canonical_id
from distretto_shared.db import CoreUnitOfWork, load
from distretto_shared.logging import get_logger
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, Invalid, NotFound, PageParams
from newsletter import domain, metrics, segments
from newsletter.bounces.models import Bounce
from newsletter.campaigns import freeze
from newsletter.campaigns.models import (
    AudienceChoice,
    AudienceCount,
    Campaign,
    CampaignCreate,
    CampaignPublic,
    CampaignRecipients,
    CampaignStats,
    CampaignUpdate,
    DeliveryPublic,
    SendTest,
    SendTestResult,
    TransactionalMails,
)
from newsletter.consent.models import ConsentRecord
from newsletter.context import Ctx, engine_of
from newsletter.delivery import compose, ledger, rendering
from newsletter.delivery.models import Delivery
from newsletter.lists.service import resolve_list_ids, resolve_lists
from newsletter.subscribers.models import Subscriber
from newsletter.tables import new_id, utcnow
from newsletter.templates.models import Template
from newsletter.templates.service import check_template_fields

log = get_logger(__name__)


# -- campaigns ------------------------------------------------------------------------


_CAMPAIGN = Campaign.__table__  # type: ignore[attr-defined]
_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
_BOUNCE = Bounce.__table__  # type: ignore[attr-defined]
_CONSENT = ConsentRecord.__table__  # type: ignore[attr-defined]
# The campaign page's reads as Core statements built once, its id a bound parameter: SQLAlchemy
# then neither builds nor keys a statement per request (its compiled form is cached), and no ORM
# object is made for a row that is only turned into the answer.
_CAMPAIGN_ROW = sa.select(_CAMPAIGN).where(_CAMPAIGN.c.id == sa.bindparam("id"))
_DELIVERIES_BY_STATUS = (
    sa.select(_DELIVERY.c.status, func.count())
    .where(_DELIVERY.c.campaign_id == sa.bindparam("id"))
    .group_by(_DELIVERY.c.status)
)
_BOUNCES = sa.select(func.count()).select_from(_BOUNCE).where(_BOUNCE.c.campaign_id == sa.bindparam("id"))
_UNSUBSCRIBES = (
    sa.select(func.count())
    .select_from(_CONSENT)
    .where(_CONSENT.c.campaign_id == sa.bindparam("id"), _CONSENT.c.action == "unsubscribe")
)


async def campaign_stats(session: AsyncSession, campaign_id: str) -> CampaignStats:
    """The campaign's deliveries by status, its bounces and the unsubscribes through its link."""
    key = {"id": campaign_id}
    counts = dict((await session.execute(_DELIVERIES_BY_STATUS, key)).all())
    counts["bounced"] = (await session.execute(_BOUNCES, key)).scalar_one()
    counts["unsubscribed"] = (await session.execute(_UNSUBSCRIBES, key)).scalar_one()
    return CampaignStats(**{k: v for k, v in counts.items() if k in CampaignStats.model_fields})


async def campaign_public(session: AsyncSession, c: Campaign, *, stats: bool = True) -> CampaignPublic:
    out = CampaignPublic(**c.model_dump())
    if stats:
        out.stats = await campaign_stats(session, c.id)
    return out


async def _load_campaign(session: AsyncSession, campaign_id: str) -> Campaign:
    c = await load(session, Campaign, campaign_id)
    if c is None:
        raise NotFound(f"no campaign {canonical_id(campaign_id)!r}")
    return c


_TEMPLATE = Template.__table__  # type: ignore[attr-defined]
# The edits' statements, built once (as the page's reads above): a campaign is created and edited
# in a Core unit of work — its row inserted, or locked (``FOR UPDATE``, as ``load`` does) and
# updated — and its answer made from the values written, with no ORM object, flush or session.
_TEMPLATE_EXISTS = sa.select(_TEMPLATE.c.id).where(_TEMPLATE.c.id == sa.bindparam("id"))
_CAMPAIGN_INSERT = _CAMPAIGN.insert()
_CAMPAIGN_LOCKED = _CAMPAIGN_ROW.with_for_update()
_CAMPAIGN_UPDATE = _CAMPAIGN.update().where(_CAMPAIGN.c.id == sa.bindparam("campaign_key"))


async def _check_template(uow: CoreUnitOfWork, template_id: str) -> bool:
    return await uow.scalar(_TEMPLATE_EXISTS, {"id": template_id}) is not None


async def create_campaign(ctx: Ctx, data: CampaignCreate, *, kind: str = "regular") -> CampaignPublic:
    check_template_fields(data.subject, None, None)
    async with ctx.db.core_transaction() as uow:
        if not await _check_template(uow, data.template_id):
            shown = canonical_id(data.template_id)
            raise Invalid(f"no template {shown!r}", details={"template_id": shown})
        lists = await resolve_list_ids(uow, data.lists)
        now = utcnow()
        values = {
            "id": new_id(),
            "name": data.name,
            "subject": data.subject,
            "template_id": data.template_id,
            "lists": lists,
            "interests": data.interests,
            "segments": await segments.resolve_ids(uow, data.segments),
            "data": data.data,
            "kind": kind,
            "status": "draft",
            "send_at": None,
            "started_at": None,
            "finished_at": None,
            "recipients": 0,
            "freeze_after": None,
            "web_url": data.web_url,
            "created_at": now,
            "updated_at": now,
        }
        await uow.execute(_CAMPAIGN_INSERT, values)
    return CampaignPublic.model_validate(values)


async def update_campaign(ctx: Ctx, campaign_id: str, data: CampaignUpdate) -> CampaignPublic:
    check_template_fields(data.subject, None, None)
    async with ctx.db.core_transaction() as uow:
        row = (await uow.execute(_CAMPAIGN_LOCKED, {"id": campaign_id})).mappings().first()
        if row is None:
            raise NotFound(f"no campaign {canonical_id(campaign_id)!r}")
        if row["status"] not in domain.EDITABLE:
            raise Conflict(f"a campaign that is {row['status']} cannot be edited")
        changes = data.model_dump(exclude_unset=True, exclude_none=True)
        if "template_id" in changes and not await _check_template(uow, changes["template_id"]):
            raise Invalid(f"no template {canonical_id(changes['template_id'])!r}")
        if "lists" in changes:
            changes["lists"] = await resolve_list_ids(uow, changes["lists"])
        if "segments" in changes:
            changes["segments"] = await segments.resolve_ids(uow, changes["segments"])
        changes["updated_at"] = utcnow()
        await uow.execute(_CAMPAIGN_UPDATE, {**changes, "campaign_key": row["id"]})
    return CampaignPublic.model_validate({**row, **changes})


async def get_campaign(ctx: Ctx, campaign_id: str) -> CampaignPublic:
    async with ctx.db.read() as session:
        row = (await session.execute(_CAMPAIGN_ROW, {"id": campaign_id})).mappings().first()
        if row is None:
            raise NotFound(f"no campaign {canonical_id(campaign_id)!r}")
        out = CampaignPublic.model_validate(dict(row))
        out.stats = await campaign_stats(session, campaign_id)
        return out


async def list_campaigns(ctx: Ctx, page: PageParams, *, status: str | None = None) -> tuple[list[CampaignPublic], int]:
    async with ctx.db.read() as session:
        q = select(Campaign)
        if status:
            q = q.where(Campaign.status == status)
        total = (await session.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
        rows = (
            (
                await session.execute(
                    q.order_by(col(Campaign.created_at).desc(), col(Campaign.id)).offset(page.offset).limit(page.limit)
                )
            )
            .scalars()
            .all()
        )
        return [await campaign_public(session, c, stats=False) for c in rows], total


def _apply(c: Campaign, action: domain.CampaignAction) -> None:
    try:
        c.status = domain.transition(c.status, action).value
    except domain.IllegalTransition as exc:
        raise Conflict(str(exc), details={"status": c.status, "action": action.value}) from exc
    c.updated_at = utcnow()


async def _count_audience(session: AsyncSession, c: Campaign) -> int:
    audience = (await freeze.audience(session, c)).subquery()
    return int((await session.execute(sa.select(func.count()).select_from(audience))).scalar_one())


async def count_audience(ctx: Ctx, choice: AudienceChoice) -> AudienceCount:
    """How many people a campaign with these lists, interests and segments would go to if started now."""
    async with ctx.db.read() as session:
        lists = await resolve_lists(session, choice.lists)
        unsaved = Campaign(
            name="",
            subject="",
            template_id="",
            lists=[lst.id for lst in lists],
            interests=choice.interests,
            segments=await segments.resolve(session, choice.segments),
        )
        return AudienceCount(recipients=await _count_audience(session, unsaved))


async def count_recipients(ctx: Ctx, campaign_id: str) -> CampaignRecipients:
    """How many people the campaign goes to: counted now while it is a draft or scheduled
    (the selection its start will freeze), the frozen number once it started."""
    async with ctx.db.read() as session:
        c = await _load_campaign(session, campaign_id)
        if c.started_at is not None or c.status not in ("draft", "scheduled"):
            return CampaignRecipients(campaign_id=c.id, status=c.status, recipients=c.recipients, frozen=True)
        count = await _count_audience(session, c)
        return CampaignRecipients(campaign_id=c.id, status=c.status, recipients=count, frozen=False)


RENDER_CHECK_SAMPLE = 200
"""Recipients a campaign is rendered for before it starts (the first, by subscriber id)."""


async def _check_renders(session: AsyncSession, ctx: Ctx, c: Campaign) -> None:
    """Render the campaign for (a sample of) its frozen audience; ``Invalid`` (422) when it renders for none.

    A template that cannot render would otherwise "finish" the campaign with every delivery
    failed. Each sampled recipient is rendered with its own fields, as the engine will; when only
    some fail (their own fields are the problem), the campaign starts and those deliveries fail.
    """
    template = await session.get(Template, c.template_id)
    if template is None:
        raise Invalid("the campaign's template is gone: choose another one before starting it")
    D = Delivery.__table__  # type: ignore[attr-defined]
    S = Subscriber.__table__  # type: ignore[attr-defined]
    sample = (
        await session.execute(
            sa.select(S.c.id, S.c.email, S.c.name, S.c.language, S.c.attributes)
            .select_from(D.join(S, S.c.id == D.c.subscriber_id))
            .where(D.c.campaign_id == c.id)
            .order_by(S.c.id)
            .limit(RENDER_CHECK_SAMPLE)
        )
    ).all()
    if not sample:
        return
    engine = engine_of(ctx)
    failures: list[tuple[str, str]] = []
    try:
        mail = compose.CampaignMail(
            ctx.settings, c, template, from_header=engine.from_header if engine else ctx.settings.from_address
        )
    except Exception as exc:
        raise Invalid(f"the campaign cannot start: its template does not compile ({exc})") from exc
    for sub_id, email, name, language, attributes in sample:
        item = ledger.Claimed(
            id=0,
            token="render-check",
            kind="campaign",
            campaign_id=c.id,
            subscriber_id=sub_id,
            email=email or "recipient@example.invalid",
            payload=None,
            attempts=0,
            name=name or "",
            language=language or "it",
            attributes=dict(attributes or {}),
        )
        try:
            mail.compose(item)
        except Exception as exc:
            failures.append((sub_id, str(exc)))
    if failures and len(failures) == len(sample):
        first_id, first_error = failures[0]
        raise Invalid(
            f"the campaign cannot start: it renders for none of the {len(sample)} recipients tried "
            f"(subscriber {canonical_id(first_id)}: {first_error}); correct the template or the subject and start it "
            "again",
            details={
                "failed": len(failures),
                "tried": len(sample),
                "subscriber_id": canonical_id(first_id),
                "error": first_error,
            },
        )
    if failures:
        # Some recipients' own fields do not render (one subscriber's oversized attribute): those
        # deliveries fail one by one with the reason, the others go out.
        log.warning("campaign does not render for some recipients", campaign_id=c.id, failed=len(failures))


async def start_in(session: AsyncSession, ctx: Ctx, c: Campaign) -> None:
    _apply(c, domain.CampaignAction.START)
    c.started_at = utcnow()
    # Counted now; the ledger's own count once the last chunk is frozen (campaigns.freeze). Only the
    # first chunk is frozen here, so the first mail leaves at once whatever the audience's size.
    c.recipients = await _count_audience(session, c)
    c.freeze_after = freeze.START
    await freeze.freeze_next(session, c, ctx.settings.freeze_chunk)
    await _check_renders(session, ctx, c)  # raises before anything is committed: the campaign stays as it was
    add_event(
        session, contracts.CampaignStarted(campaign_id=c.id, name=c.name, recipients=c.recipients), source=ctx.source
    )
    if c.web_url and c.kind == "regular":
        add_event(
            session,
            contracts.CampaignPublished(
                campaign_id=c.id, subject_line=public_subject(c), web_url=c.web_url, published_at=c.started_at
            ),
            source=ctx.source,
        )
    if c.freeze_after is None and c.recipients == 0:
        await _finish(session, ctx, c)


def public_subject(c: Campaign) -> str:
    """The subject as everyone sees it: rendered with the campaign's fields only. A subject that
    needs a subscriber's fields (``{{ subscriber.name }}``) is personal to each mail: the campaign's name stands in."""
    try:
        shared = {"campaign": {"id": c.id, "name": c.name, "data": c.data}}
        return rendering.CampaignRenderer(c.subject, "", "", shared).render(shared).subject or c.name
    except Exception:
        return c.name


async def _finish(session: AsyncSession, ctx: Ctx, c: Campaign) -> None:
    counts = dict(
        (
            await session.execute(
                select(Delivery.status, func.count()).where(Delivery.campaign_id == c.id).group_by(Delivery.status)
            )
        ).all()
    )
    if c.status == "running":
        _apply(c, domain.CampaignAction.FINISH)
    c.finished_at = utcnow()
    add_event(
        session,
        contracts.CampaignFinished(
            campaign_id=c.id, status=c.status, sent=counts.get("sent", 0), failed=counts.get("failed", 0)
        ),
        source=ctx.source,
    )


async def campaign_action(ctx: Ctx, campaign_id: str, action: domain.CampaignAction) -> CampaignPublic:
    """start, pause, resume, cancel, unschedule (illegal from the current status: 409)."""
    async with ctx.db.transaction() as session:
        c = await _load_campaign(session, campaign_id)
        if action == domain.CampaignAction.START:
            await start_in(session, ctx, c)
        elif action == domain.CampaignAction.CANCEL:
            _apply(c, action)
            c.freeze_after = None  # the rest of its audience is never frozen
            await session.execute(
                sa.update(Delivery)
                .where(col(Delivery.campaign_id) == c.id, col(Delivery.status) == "pending")
                .values(status="cancelled")
            )
            await _finish(session, ctx, c)
        else:
            _apply(c, action)
        out = await campaign_public(session, c)
    engine = engine_of(ctx)
    if engine is not None:
        engine.campaign_changed(c.id, c.status)
    return out


async def schedule_campaign(ctx: Ctx, campaign_id: str, send_at: datetime) -> CampaignPublic:
    """Schedule a campaign for a time in the future (422 for a past one: it would go out at once)."""
    now = utcnow()
    if send_at.astimezone(UTC) <= now:
        raise Invalid(
            f"send_at {send_at.isoformat()} is in the past (it is now {now.isoformat(timespec='seconds')}): "
            "choose a later time, or start the campaign now",
            details={"send_at": send_at.isoformat()},
        )
    async with ctx.db.transaction() as session:
        c = await _load_campaign(session, campaign_id)
        _apply(c, domain.CampaignAction.SCHEDULE)
        c.send_at = send_at.astimezone(UTC)
        return await campaign_public(session, c, stats=False)


async def start_due_campaigns(ctx: Ctx) -> int:
    """Start every scheduled campaign whose time has come (the scheduler's job)."""
    async with ctx.db.read() as session:
        due = (
            (
                await session.execute(
                    select(Campaign.id).where(Campaign.status == "scheduled", col(Campaign.send_at) <= utcnow())
                )
            )
            .scalars()
            .all()
        )
    started = 0
    for cid in due:
        try:
            await campaign_action(ctx, cid, domain.CampaignAction.START)
            started += 1
        except Conflict:
            pass  # someone else started or cancelled it meanwhile
        except Invalid as exc:
            # It cannot render: back to draft for the staff to correct (not retried every tick).
            log.warning("scheduled campaign does not render; unscheduled", campaign_id=cid, reason=exc.message)
            with contextlib.suppress(Conflict):
                await campaign_action(ctx, cid, domain.CampaignAction.UNSCHEDULE)
    return started


async def finish_done_campaigns(ctx: Ctx) -> int:
    """Running campaigns with nothing left to freeze or send become finished; released rows of cancelled
    ones are cancelled."""
    finished = 0
    async with ctx.db.read() as session:
        running = (
            (
                await session.execute(
                    select(Campaign.id).where(Campaign.status == "running", col(Campaign.freeze_after).is_(None))
                )
            )
            .scalars()
            .all()
        )
    for cid in running:
        async with ctx.db.transaction() as session:
            left = (
                await session.execute(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.campaign_id == cid, col(Delivery.status).in_(["pending", "sending"]))
                )
            ).scalar_one()
            if left:
                continue
            c = await _load_campaign(session, cid)
            if c.status != "running" or c.freeze_after is not None:
                continue
            await _finish(session, ctx, c)
            finished += 1
        engine = engine_of(ctx)
        if engine is not None:
            engine.campaign_changed(cid, "finished")
    async with ctx.db.transaction() as session:
        cancelled = select(Campaign.id).where(Campaign.status == "cancelled")
        await session.execute(
            sa.update(Delivery)
            .where(col(Delivery.campaign_id).in_(cancelled), col(Delivery.status) == "pending")
            .values(status="cancelled")
        )
    return finished


async def update_queue_metrics(ctx: Ctx) -> None:
    """Queue depth and delivery ratio gauges."""
    async with ctx.db.read() as session:
        counts = dict((await session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))).all())
    metrics.QUEUE_DEPTH.set(counts.get("pending", 0) + counts.get("sending", 0))
    done = counts.get("sent", 0) + counts.get("failed", 0)
    metrics.DELIVERY_RATIO.set(counts.get("sent", 0) / done if done else 1.0)


async def transactional_mails(ctx: Ctx) -> TransactionalMails:
    """How many confirmation and welcome mails are waiting, sent, failed… (all time)."""
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(Delivery.kind, Delivery.status, func.count())
                .where(col(Delivery.kind).in_(["confirmation", "welcome"]))
                .group_by(Delivery.kind, Delivery.status)
            )
        ).all()
    counts: dict[str, dict[str, int]] = {"confirmation": {}, "welcome": {}}
    for kind, status, n in rows:
        if status in CampaignStats.model_fields:
            counts[kind][status] = n
    return TransactionalMails(**{kind: CampaignStats(**c) for kind, c in counts.items()})


async def list_deliveries(
    ctx: Ctx, campaign_id: str, page: PageParams, *, status: str | None = None
) -> tuple[list[DeliveryPublic], int]:
    async with ctx.db.read() as session:
        await _load_campaign(session, campaign_id)
        q = select(Delivery).where(Delivery.campaign_id == campaign_id)
        if status:
            q = q.where(Delivery.status == status)
        total = (await session.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
        rows = (
            (await session.execute(q.order_by(col(Delivery.id)).offset(page.offset).limit(page.limit))).scalars().all()
        )
    return [DeliveryPublic(**r.model_dump()) for r in rows], total  # type: ignore[arg-type]


async def send_test(ctx: Ctx, campaign_id: str, data: SendTest) -> list[SendTestResult]:
    """Render the campaign for each address (its subscriber's fields when known) and send it now."""
    settings = ctx.settings
    engine = engine_of(ctx)
    if engine is None:
        raise Conflict("delivery is disabled in this instance")
    async with ctx.db.read() as session:
        c = await _load_campaign(session, campaign_id)
        template = await session.get(Template, c.template_id)
        if template is None:
            raise Invalid("the campaign's template is gone")
        known = {
            s.email: s
            for s in (await session.execute(select(Subscriber).where(col(Subscriber.email).in_(data.emails)))).scalars()
        }
    mail = compose.CampaignMail(settings, c, template, from_header=engine.from_header, subject_prefix="[TEST] ")
    results = []
    for email in data.emails:
        sub = known.get(email)
        item = ledger.Claimed(
            id=0,
            token="test",
            kind="campaign",
            campaign_id=c.id,
            subscriber_id=sub.id if sub else "test-" + domain.email_sha256(email)[:12],
            email=email,
            payload=None,
            attempts=0,
            name=sub.name if sub else "Test",
            language=sub.language if sub else "it",
            attributes=sub.attributes if sub else {},
        )
        try:
            _mid, message = mail.compose(item)
        except Exception as exc:
            raise Invalid(f"the campaign does not render: {exc}") from exc
        result = await engine.send_now(email, message)
        results.append(SendTestResult(email=email, ok=result.ok, smtp_code=result.code, smtp_reply=result.reply))
    _ = settings
    return results
