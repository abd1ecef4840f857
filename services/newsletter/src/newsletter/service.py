"""Use cases of the newsletter: one unit of work each (load, apply the rule, save, add outbox events)."""

from __future__ import annotations

import asyncio
import contextlib
import html as html_lib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, func, or_, select

from distretto_shared.context import Context
from distretto_shared.contracts import membership as membership_contracts
from distretto_shared.contracts import newsletter as contracts
from distretto_shared.db import contains_text
from distretto_shared.logging import get_logger
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, DomainError, Invalid, NotFound, PageParams
from newsletter import domain, metrics, segments
from newsletter.bounces.service import record_bounce_in
from newsletter.config import Settings
from newsletter.delivery import compose, ledger, rendering
from newsletter.delivery.engine import DeliveryEngine
from newsletter.links import links_for
from newsletter.models import (
    AudienceChoice,
    AudienceCount,
    Bounce,
    BouncePublic,
    BounceReport,
    Campaign,
    CampaignCreate,
    CampaignPublic,
    CampaignRecipients,
    CampaignStats,
    CampaignUpdate,
    ConsentRecord,
    Delivery,
    DeliveryPublic,
    DigestItem,
    MailingList,
    MailingListCreate,
    MailingListPublic,
    MemberContact,
    MemberOrganisation,
    Preferences,
    RateHit,
    SendTest,
    SendTestResult,
    SignUp,
    Subscriber,
    SubscriberCreate,
    SubscriberInterest,
    SubscriberPublic,
    SubscriberUpdate,
    Subscription,
    SubscriptionPublic,
    Suppression,
    Template,
    TemplateCreate,
    TemplatePublic,
    TemplateUpdate,
    TransactionalMails,
    WebhookReceipt,
    new_id,
    utcnow,
)

log = get_logger(__name__)


class RateLimited(DomainError):
    """Too many sign-ups from this address or this client."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class Gone(DomainError):
    """A link that was valid once and has expired."""

    status = 410
    code = "gone"


@dataclass(frozen=True)
class Client:
    """Who is on the other end of a public request."""

    address: str | None
    user_agent: str | None


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


Ctx = Context[Settings]
"""What every use case receives: the caller, the database, the settings (docs/service-guide.md)."""


# -- lists -----------------------------------------------------------------------


async def create_list(ctx: Ctx, data: MailingListCreate) -> MailingListPublic:
    async with ctx.db.transaction() as session:
        if (await session.execute(select(MailingList).where(MailingList.slug == data.slug))).first():
            raise Conflict(f"a list with slug {data.slug!r} already exists")
        row = MailingList(**data.model_dump())
        session.add(row)
    return MailingListPublic(**row.model_dump())


async def _list_counts(session: AsyncSession, ids: list[str]) -> dict[str, int]:
    rows = await session.execute(
        select(Subscription.list_id, func.count())
        .where(col(Subscription.list_id).in_(ids), Subscription.status == "confirmed")
        .group_by(Subscription.list_id)
    )
    return {r[0]: r[1] for r in rows}


async def list_lists(ctx: Ctx, page: PageParams) -> tuple[list[MailingListPublic], int]:
    async with ctx.db.read() as session:
        total = (await session.execute(select(func.count()).select_from(MailingList))).scalar_one()
        rows = (
            (
                await session.execute(
                    select(MailingList)
                    .order_by(col(MailingList.created_at), col(MailingList.id))
                    .offset(page.offset)
                    .limit(page.limit)
                )
            )
            .scalars()
            .all()
        )
        counts = await _list_counts(session, [r.id for r in rows])
    return [MailingListPublic(**r.model_dump(), subscribers=counts.get(r.id, 0)) for r in rows], total


async def get_list(ctx: Ctx, list_id: str) -> MailingListPublic:
    async with ctx.db.read() as session:
        row = await _find_list(session, list_id)
        counts = await _list_counts(session, [row.id])
    return MailingListPublic(**row.model_dump(), subscribers=counts.get(row.id, 0))


async def _find_list(session: AsyncSession, ref: str) -> MailingList:
    row = (
        await session.execute(
            select(MailingList).where(sa.or_(col(MailingList.id) == ref, col(MailingList.slug) == ref))
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no list {ref!r}")
    return row


async def _resolve_lists(session: AsyncSession, refs: Sequence[str], *, public_only: bool = False) -> list[MailingList]:
    rows = (
        (
            await session.execute(
                select(MailingList).where(sa.or_(col(MailingList.id).in_(refs), col(MailingList.slug).in_(refs)))
            )
        )
        .scalars()
        .all()
    )
    known = {r.id for r in rows} | {r.slug for r in rows}
    missing = [r for r in refs if r not in known]
    if missing:
        raise Invalid(f"unknown list(s): {', '.join(missing)}", details={"lists": missing})
    if public_only:
        private = [r.slug for r in rows if r.visibility != "public"]
        if private:
            raise Invalid(f"list(s) not open to sign-up: {', '.join(private)}", details={"lists": private})
    return list(rows)


async def ensure_members_list(session: AsyncSession, settings: Settings) -> MailingList:
    """The private list of member contacts who consented (created on first use)."""
    row = (
        await session.execute(select(MailingList).where(MailingList.slug == settings.members_list_slug))
    ).scalar_one_or_none()
    if row is None:
        row = MailingList(
            slug=settings.members_list_slug,
            name="Member organisations",
            description="Contacts of member organisations who consented to the newsletter",
            visibility="private",
        )
        session.add(row)
        await session.flush()
    return row


# -- subscribers -------------------------------------------------------------------


async def _set_interests(session: AsyncSession, subscriber_id: str, interests: Sequence[str], *, replace: bool) -> None:
    if replace:
        await session.execute(
            sa.delete(SubscriberInterest).where(col(SubscriberInterest.subscriber_id) == subscriber_id)
        )
        existing: set[str] = set()
    else:
        existing = set(
            (
                await session.execute(
                    select(SubscriberInterest.interest).where(SubscriberInterest.subscriber_id == subscriber_id)
                )
            )
            .scalars()
            .all()
        )
    for interest in interests:
        if interest not in existing:
            session.add(SubscriberInterest(subscriber_id=subscriber_id, interest=interest))
            existing.add(interest)


async def _subscriber_public(session: AsyncSession, sub: Subscriber) -> SubscriberPublic:
    return (await _subscribers_public(session, [sub]))[0]


async def _subscribers_public(session: AsyncSession, subs: Sequence[Subscriber]) -> list[SubscriberPublic]:
    """The public view of many subscribers with two queries in all (interests, subscriptions), not two a row."""
    ids = [sub.id for sub in subs]
    if not ids:
        return []
    interests: dict[str, list[str]] = {i: [] for i in ids}
    for subscriber_id, interest in (
        await session.execute(
            select(SubscriberInterest.subscriber_id, SubscriberInterest.interest).where(
                col(SubscriberInterest.subscriber_id).in_(ids)
            )
        )
    ).all():
        interests[subscriber_id].append(interest)
    subscriptions: dict[str, list[SubscriptionPublic]] = {i: [] for i in ids}
    for subscriber_id, list_id, slug, status in (
        await session.execute(
            select(Subscription.subscriber_id, Subscription.list_id, MailingList.slug, Subscription.status)
            .join(MailingList, col(MailingList.id) == col(Subscription.list_id))
            .where(col(Subscription.subscriber_id).in_(ids))
            .order_by(col(MailingList.slug))
        )
    ).all():
        subscriptions[subscriber_id].append(SubscriptionPublic(list_id=list_id, list_slug=slug, status=status))
    return [
        SubscriberPublic(
            **sub.model_dump(exclude={"email_sha256", "contact_id", "updated_at"}),
            interests=sorted(interests[sub.id]),
            subscriptions=subscriptions[sub.id],
        )
        for sub in subs
    ]


async def _by_email(session: AsyncSession, email: str) -> Subscriber | None:
    return (await session.execute(select(Subscriber).where(Subscriber.email == email))).scalar_one_or_none()


async def _subscribe(
    session: AsyncSession, sub: Subscriber, lists: Sequence[MailingList], status: str
) -> list[MailingList]:
    """Put ``sub`` on ``lists`` with ``status``; returns the lists whose subscription changed."""
    changed = []
    for lst in lists:
        row = await session.get(Subscription, (sub.id, lst.id))
        if row is None:
            session.add(Subscription(subscriber_id=sub.id, list_id=lst.id, status=status))
            changed.append(lst)
        elif row.status != "confirmed" and row.status != status:
            row.status = status
            row.updated_at = utcnow()
            changed.append(lst)
    return changed


async def create_subscriber(ctx: Ctx, data: SubscriberCreate) -> SubscriberPublic:
    """An administrator adds a subscriber (pre-confirmed only when consent was collected elsewhere)."""
    settings = ctx.settings
    async with ctx.db.transaction() as session:
        if await _by_email(session, data.email):
            raise Conflict(f"{data.email} is already a subscriber")
        lists = await _resolve_lists(session, data.lists) if data.lists else []
        sub = Subscriber(
            email=data.email,
            email_sha256=domain.email_sha256(data.email),
            name=domain.clean_header_text(data.name, limit=200),
            language=data.language,
            attributes=data.attributes,
            confirmed_at=utcnow() if data.preconfirmed else None,
        )
        session.add(sub)
        await session.flush()
        await _subscribe(session, sub, lists, "confirmed" if data.preconfirmed else "unconfirmed")
        await _set_interests(session, sub.id, data.interests, replace=True)
        session.add(
            ConsentRecord(
                subscriber_id=sub.id,
                action="import" if data.preconfirmed else "admin-added",
                lists=[lst.slug for lst in lists],
                source=data.consent_source,
                wording_version=data.consent_wording_version or settings.consent_wording_version,
            )
        )
        if data.preconfirmed and lists:
            add_event(
                session,
                contracts.SubscriberConfirmed(
                    subscriber_id=sub.id, lists=[lst.slug for lst in lists], interests=data.interests
                ),
                source=ctx.source,
            )
        elif lists:
            _queue_confirmation(session, settings, sub)
        out = await _subscriber_public(session, sub)
    _wake(ctx)
    return out


async def list_subscribers(
    ctx: Ctx, page: PageParams, *, list_ref: str | None = None, status: str | None = None, text: str | None = None
) -> tuple[list[SubscriberPublic], int]:
    """One page of the subscribers on a list / with a status / whose address or name holds ``text``."""
    async with ctx.db.read() as session:
        q = select(Subscriber)
        if text and text.strip():
            q = q.where(or_(contains_text(Subscriber.email, text), contains_text(Subscriber.name, text)))
        if list_ref:
            lst = await _find_list(session, list_ref)
            cond: list[Any] = [Subscription.list_id == lst.id, Subscription.subscriber_id == Subscriber.id]
            if status:
                cond.append(Subscription.status == status)
            q = q.where(sa.exists().where(*cond))
        elif status == "suppressed":
            q = q.where(col(Subscriber.suppressed).is_(True))
        total = (await session.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
        rows = (
            (
                await session.execute(
                    q.order_by(col(Subscriber.created_at), col(Subscriber.id)).offset(page.offset).limit(page.limit)
                )
            )
            .scalars()
            .all()
        )
        return await _subscribers_public(session, rows), total


async def get_subscriber(ctx: Ctx, subscriber_id: str) -> SubscriberPublic:
    async with ctx.db.read() as session:
        sub = await session.get(Subscriber, subscriber_id)
        if sub is None:
            raise NotFound(f"no subscriber {subscriber_id!r}")
        return await _subscriber_public(session, sub)


async def update_subscriber(ctx: Ctx, subscriber_id: str, data: SubscriberUpdate) -> SubscriberPublic:
    async with ctx.db.transaction() as session:
        sub = await session.get(Subscriber, subscriber_id)
        if sub is None:
            raise NotFound(f"no subscriber {subscriber_id!r}")
        if data.name is not None:
            sub.name = domain.clean_header_text(data.name, limit=200)
        if data.language is not None:
            sub.language = data.language
        if data.attributes is not None:
            sub.attributes = data.attributes
        if data.interests is not None:
            await _set_interests(session, sub.id, data.interests, replace=True)
        sub.updated_at = utcnow()
        return await _subscriber_public(session, sub)


# -- double opt-in -----------------------------------------------------------------


CONFIRM_TEXT = """Hello {name},

please confirm that you want to receive the newsletter of the Tuscan life-sciences cluster
(lists: {lists}) by opening this link:

{url}

The link expires on {expires}. If you did not ask for this, ignore this mail: nothing happens.
"""


def _queue_confirmation(session: AsyncSession, settings: Settings, sub: Subscriber, lists: Sequence[str] = ()) -> None:
    expires = utcnow() + timedelta(hours=settings.confirm_ttl_hours)
    token = domain.sign_token(settings.secret_key, "confirm", sub.id, expires=expires, extra=new_id()[:8])
    url = f"{settings.link_base_url.rstrip('/')}/confirm?token={token}"
    names = ", ".join(lists) or "newsletter"
    text = CONFIRM_TEXT.format(
        name=sub.name or sub.email, lists=names, url=url, expires=expires.strftime("%Y-%m-%d %H:%M UTC")
    )
    html = (
        f"<p>Hello {html_lib.escape(sub.name or sub.email)},</p>"
        f"<p>please confirm your subscription ({html_lib.escape(names)}):</p>"
        f'<p><a href="{html_lib.escape(url)}">Confirm my subscription</a></p>'
        f"<p>The link expires on {expires:%Y-%m-%d %H:%M} UTC. If you did not ask for this, ignore this mail.</p>"
    )
    session.add(
        Delivery(
            kind="confirmation",
            dedupe_key=f"confirm:{sub.id}:{new_id()}",
            subscriber_id=None,
            email=sub.email,
            payload={"subject": "Please confirm your subscription", "text": text, "html": html, "to_name": sub.name},
        )
    )


async def _rate_check(session: AsyncSession, settings: Settings, scope: str, key: str, limit: int) -> None:
    now = utcnow()
    window = timedelta(seconds=settings.signup_window_seconds)
    times = (
        (
            await session.execute(
                select(RateHit.at).where(RateHit.scope == scope, RateHit.key == key, col(RateHit.at) > now - window)
            )
        )
        .scalars()
        .all()
    )
    wait = domain.retry_after([_aware(t) or now for t in times], now=now, window=window, limit=limit)
    if wait is not None:
        raise RateLimited(f"too many sign-ups from this {scope}; try again in {wait} s", retry_after=wait)


async def sign_up(ctx: Ctx, data: SignUp, client: Client) -> None:
    """Public sign-up: records consent, puts the subscriber on public lists unconfirmed, mails a signed link.

    The answer is the same whether the address is new, known or suppressed (no address probing).
    """
    settings = ctx.settings
    async with ctx.db.transaction() as session:
        lists = await _resolve_lists(session, data.lists, public_only=True)
        address_key = domain.email_sha256(data.email)
        await _rate_check(session, settings, "address", address_key, settings.signup_limit_per_address)
        client_key = (client.address or "unknown")[:100]
        await _rate_check(session, settings, "client", client_key, settings.signup_limit_per_client)
        session.add(RateHit(scope="address", key=address_key))
        session.add(RateHit(scope="client", key=client_key))
        sub = await _by_email(session, data.email)
        if sub is None:
            sub = Subscriber(
                email=data.email,
                email_sha256=address_key,
                name=domain.clean_header_text(data.name, limit=200),
                language=data.language,
            )
            session.add(sub)
            await session.flush()
        elif data.name and not sub.name:
            sub.name = domain.clean_header_text(data.name, limit=200)
        session.add(
            ConsentRecord(
                subscriber_id=sub.id,
                action="sign-up",
                lists=[lst.slug for lst in lists],
                source=data.source,
                wording_version=data.consent_wording_version or settings.consent_wording_version,
                client_address=client.address,
                user_agent=(client.user_agent or "")[:300] or None,
            )
        )
        if sub.suppressed:
            return
        changed = await _subscribe(session, sub, lists, "unconfirmed")
        await _set_interests(session, sub.id, data.interests, replace=False)
        if changed:
            _queue_confirmation(session, settings, sub, [lst.slug for lst in changed])
    _wake(ctx)


def _verify(settings: Settings, token: str, purpose: str) -> domain.TokenClaims:
    try:
        return domain.verify_token(settings.secret_key, token, purpose, now=utcnow())
    except domain.BadToken as exc:
        if "expired" in str(exc):
            raise Gone(str(exc)) from exc
        raise Invalid(str(exc)) from exc


async def confirm(ctx: Ctx, token: str, client: Client) -> list[str]:
    """Confirm the double opt-in; returns the slugs of the lists now confirmed."""
    settings = ctx.settings
    claims = _verify(settings, token, "confirm")
    async with ctx.db.transaction() as session:
        sub = await session.get(Subscriber, claims.subject)
        if sub is None:
            raise NotFound("this subscription no longer exists")
        rows = (
            await session.execute(
                select(Subscription, MailingList.slug)
                .join(MailingList, col(MailingList.id) == col(Subscription.list_id))
                .where(Subscription.subscriber_id == sub.id, Subscription.status == "unconfirmed")
            )
        ).all()
        slugs = []
        for subscription, slug in rows:
            subscription.status = "confirmed"
            subscription.updated_at = utcnow()
            slugs.append(slug)
        if not slugs:
            return []
        sub.confirmed_at = sub.confirmed_at or utcnow()
        session.add(
            ConsentRecord(
                subscriber_id=sub.id,
                action="confirm",
                lists=slugs,
                source="confirmation-link",
                wording_version=settings.consent_wording_version,
                client_address=client.address,
                user_agent=(client.user_agent or "")[:300] or None,
            )
        )
        interests = (
            (
                await session.execute(
                    select(SubscriberInterest.interest).where(SubscriberInterest.subscriber_id == sub.id)
                )
            )
            .scalars()
            .all()
        )
        add_event(
            session,
            contracts.SubscriberConfirmed(subscriber_id=sub.id, lists=slugs, interests=sorted(interests)),
            source=ctx.source,
        )
    return slugs


# -- preferences and unsubscribe --------------------------------------------------------


async def preferences(ctx: Ctx, token: str) -> tuple[SubscriberPublic, list[MailingList]]:
    """The subscriber behind a preferences link and the lists they may choose from."""
    claims = _verify(ctx.settings, token, "preferences")
    async with ctx.db.read() as session:
        sub = await session.get(Subscriber, claims.subject)
        if sub is None:
            raise NotFound("this subscription no longer exists")
        public = await _subscriber_public(session, sub)
        mine = {s.list_id for s in public.subscriptions}
        lists = (
            (
                await session.execute(
                    select(MailingList)
                    .where(sa.or_(col(MailingList.visibility) == "public", col(MailingList.id).in_(mine)))
                    .order_by(col(MailingList.name))
                )
            )
            .scalars()
            .all()
        )
    return public, list(lists)


async def update_preferences(ctx: Ctx, token: str, prefs: Preferences, client: Client) -> SubscriberPublic:
    """Apply the preferences form: chosen lists confirmed (the link proves the address), others left."""
    settings = ctx.settings
    claims = _verify(settings, token, "preferences")
    async with ctx.db.transaction() as session:
        sub = await session.get(Subscriber, claims.subject)
        if sub is None:
            raise NotFound("this subscription no longer exists")
        current = {
            s.list_id: s
            for s in (await session.execute(select(Subscription).where(Subscription.subscriber_id == sub.id))).scalars()
        }
        wanted = [] if prefs.unsubscribe_all else await _resolve_lists(session, prefs.lists)
        for lst in wanted:
            if lst.visibility != "public" and lst.id not in current:
                raise Invalid(f"list {lst.slug!r} is not open to sign-up")
        wanted_ids = {lst.id for lst in wanted}
        joined = [lst.slug for lst in wanted if current.get(lst.id) is None or current[lst.id].status != "confirmed"]
        left_ids = [lid for lid, s in current.items() if lid not in wanted_ids and s.status != "unsubscribed"]
        for lst in wanted:
            row = current.get(lst.id)
            if row is None:
                session.add(Subscription(subscriber_id=sub.id, list_id=lst.id, status="confirmed"))
            else:
                row.status, row.updated_at = "confirmed", utcnow()
        for lid in left_ids:
            current[lid].status, current[lid].updated_at = "unsubscribed", utcnow()
        if prefs.name is not None:
            sub.name = domain.clean_header_text(prefs.name, limit=200)
        await _set_interests(session, sub.id, prefs.interests, replace=True)
        if wanted and sub.confirmed_at is None:
            sub.confirmed_at = utcnow()
        left_slugs = [
            r[0] for r in await session.execute(select(MailingList.slug).where(col(MailingList.id).in_(left_ids)))
        ]
        session.add(
            ConsentRecord(
                subscriber_id=sub.id,
                action="preferences",
                lists=sorted(lst.slug for lst in wanted),
                source="preferences-page",
                wording_version=settings.consent_wording_version,
                client_address=client.address,
                user_agent=(client.user_agent or "")[:300] or None,
            )
        )
        if joined:
            add_event(
                session,
                contracts.SubscriberConfirmed(subscriber_id=sub.id, lists=joined, interests=prefs.interests),
                source=ctx.source,
            )
        if left_slugs:
            add_event(
                session,
                contracts.SubscriberUnsubscribed(subscriber_id=sub.id, lists=sorted(left_slugs), method="preferences"),
                source=ctx.source,
            )
        return await _subscriber_public(session, sub)


def check_unsubscribe_token(settings: Settings, token: str) -> domain.TokenClaims:
    """Verify an unsubscribe link (for the page that shows the button)."""
    return _verify(settings, token, "unsubscribe")


async def unsubscribe(ctx: Ctx, token: str, *, method: str, client: Client) -> list[str]:
    """One step: leave the lists the campaign went to (every list when the link names none)."""
    settings = ctx.settings
    claims = _verify(settings, token, "unsubscribe")
    async with ctx.db.transaction() as session:
        sub = await session.get(Subscriber, claims.subject)
        if sub is None:
            return []  # erased already: nothing left to unsubscribe
        list_ids: list[str] | None = None
        campaign = await session.get(Campaign, claims.extra) if claims.extra else None
        if campaign is not None:
            list_ids = list(campaign.lists)
        q = select(Subscription).where(Subscription.subscriber_id == sub.id, Subscription.status != "unsubscribed")
        if list_ids is not None:
            q = q.where(col(Subscription.list_id).in_(list_ids))
        rows = (await session.execute(q)).scalars().all()
        if not rows:
            return []
        for row in rows:
            row.status, row.updated_at = "unsubscribed", utcnow()
        slugs = sorted(
            r[0]
            for r in await session.execute(
                select(MailingList.slug).where(col(MailingList.id).in_([r.list_id for r in rows]))
            )
        )
        session.add(
            ConsentRecord(
                subscriber_id=sub.id,
                action="unsubscribe",
                lists=slugs,
                source=method,
                wording_version=settings.consent_wording_version,
                client_address=client.address,
                user_agent=(client.user_agent or "")[:300] or None,
                campaign_id=campaign.id if campaign is not None else None,
            )
        )
        add_event(
            session,
            contracts.SubscriberUnsubscribed(subscriber_id=sub.id, lists=slugs, method=method),
            source=ctx.source,
        )
    return slugs


# -- templates -----------------------------------------------------------------------


def _check_template_fields(subject: str | None, html: str | None, text: str | None) -> None:
    problems = {}
    for name, value, is_html in (("subject", subject, False), ("body_html", html, True), ("body_text", text, False)):
        if value is None:
            continue
        try:
            rendering.check_template(value, html=is_html)
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise Invalid("; ".join(f"{k}: {v}" for k, v in problems.items()), details=problems)


async def create_template(ctx: Ctx, data: TemplateCreate) -> TemplatePublic:
    _check_template_fields(data.subject, data.body_html, data.body_text)
    async with ctx.db.transaction() as session:
        if (await session.execute(select(Template).where(Template.name == data.name))).first():
            raise Conflict(f"a template named {data.name!r} already exists")
        row = Template(**data.model_dump())
        session.add(row)
    return TemplatePublic(**row.model_dump())


async def update_template(ctx: Ctx, template_id: str, data: TemplateUpdate) -> TemplatePublic:
    _check_template_fields(data.subject, data.body_html, data.body_text)
    async with ctx.db.transaction() as session:
        row = await session.get(Template, template_id)
        if row is None:
            raise NotFound(f"no template {template_id!r}")
        changes = data.model_dump(exclude_unset=True, exclude_none=True)
        renamed = "name" in changes and changes["name"] != row.name
        if renamed and (await session.execute(select(Template).where(Template.name == changes["name"]))).first():
            raise Conflict(f"a template named {changes['name']!r} already exists")
        for k, v in changes.items():
            setattr(row, k, v)
        row.updated_at = utcnow()
    return TemplatePublic(**row.model_dump())


async def get_template(ctx: Ctx, template_id: str) -> TemplatePublic:
    async with ctx.db.read() as session:
        row = await session.get(Template, template_id)
        if row is None:
            raise NotFound(f"no template {template_id!r}")
        return TemplatePublic(**row.model_dump())


async def list_templates(ctx: Ctx, page: PageParams) -> tuple[list[TemplatePublic], int]:
    async with ctx.db.read() as session:
        total = (await session.execute(select(func.count()).select_from(Template))).scalar_one()
        rows = (
            (await session.execute(select(Template).order_by(col(Template.name)).offset(page.offset).limit(page.limit)))
            .scalars()
            .all()
        )
    return [TemplatePublic(**r.model_dump()) for r in rows], total


# -- campaigns ------------------------------------------------------------------------


async def _campaign_public(session: AsyncSession, c: Campaign, *, stats: bool = True) -> CampaignPublic:
    out = CampaignPublic(**c.model_dump())
    if stats:
        counts = dict(
            (
                await session.execute(
                    select(Delivery.status, func.count()).where(Delivery.campaign_id == c.id).group_by(Delivery.status)
                )
            ).all()
        )
        counts["bounced"] = (
            await session.execute(select(func.count()).select_from(Bounce).where(Bounce.campaign_id == c.id))
        ).scalar_one()
        counts["unsubscribed"] = (
            await session.execute(
                select(func.count())
                .select_from(ConsentRecord)
                .where(ConsentRecord.campaign_id == c.id, ConsentRecord.action == "unsubscribe")
            )
        ).scalar_one()
        out.stats = CampaignStats(**{k: v for k, v in counts.items() if k in CampaignStats.model_fields})
    return out


async def _load_campaign(session: AsyncSession, campaign_id: str) -> Campaign:
    c = await session.get(Campaign, campaign_id)
    if c is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    return c


async def create_campaign(ctx: Ctx, data: CampaignCreate, *, kind: str = "regular") -> CampaignPublic:
    _check_template_fields(data.subject, None, None)
    async with ctx.db.transaction() as session:
        if await session.get(Template, data.template_id) is None:
            raise Invalid(f"no template {data.template_id!r}", details={"template_id": data.template_id})
        lists = await _resolve_lists(session, data.lists)
        c = Campaign(
            name=data.name,
            subject=data.subject,
            template_id=data.template_id,
            lists=[lst.id for lst in lists],
            interests=data.interests,
            segments=await segments.resolve(session, data.segments),
            data=data.data,
            kind=kind,
            web_url=data.web_url,
        )
        session.add(c)
        await session.flush()
        return await _campaign_public(session, c, stats=False)


async def update_campaign(ctx: Ctx, campaign_id: str, data: CampaignUpdate) -> CampaignPublic:
    _check_template_fields(data.subject, None, None)
    async with ctx.db.transaction() as session:
        c = await _load_campaign(session, campaign_id)
        if c.status not in domain.EDITABLE:
            raise Conflict(f"a campaign that is {c.status} cannot be edited")
        changes = data.model_dump(exclude_unset=True, exclude_none=True)
        if "template_id" in changes and await session.get(Template, changes["template_id"]) is None:
            raise Invalid(f"no template {changes['template_id']!r}")
        if "lists" in changes:
            changes["lists"] = [lst.id for lst in await _resolve_lists(session, changes["lists"])]
        if "segments" in changes:
            changes["segments"] = await segments.resolve(session, changes["segments"])
        for k, v in changes.items():
            setattr(c, k, v)
        c.updated_at = utcnow()
        return await _campaign_public(session, c, stats=False)


async def get_campaign(ctx: Ctx, campaign_id: str) -> CampaignPublic:
    async with ctx.db.read() as session:
        return await _campaign_public(session, await _load_campaign(session, campaign_id))


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
        return [await _campaign_public(session, c, stats=False) for c in rows], total


def _apply(c: Campaign, action: domain.CampaignAction) -> None:
    try:
        c.status = domain.transition(c.status, action).value
    except domain.IllegalTransition as exc:
        raise Conflict(str(exc), details={"status": c.status, "action": action.value}) from exc
    c.updated_at = utcnow()


def _engine(ctx: Ctx) -> DeliveryEngine | None:
    return ctx.find(DeliveryEngine)


def _wake(ctx: Ctx) -> None:
    engine = _engine(ctx)
    if engine is not None:
        engine.wake()


async def _audience(session: AsyncSession, c: Campaign) -> sa.Select[Any]:
    """The ids of the subscribers a campaign goes to: confirmed on one of its lists, not suppressed,
    with one of its interests (when it names any), in its segments (when it names any; segments
    carry the consent rule). The one selection behind both the freeze at start and the count before."""
    S = Subscriber.__table__  # type: ignore[attr-defined]
    SS = Subscription.__table__  # type: ignore[attr-defined]
    SI = SubscriberInterest.__table__  # type: ignore[attr-defined]
    audience = sa.select(S.c.id).where(
        S.c.suppressed.is_(False),
        sa.exists().where(SS.c.subscriber_id == S.c.id, SS.c.list_id.in_(c.lists), SS.c.status == "confirmed"),
    )
    if c.interests:
        audience = audience.where(sa.exists().where(SI.c.subscriber_id == S.c.id, SI.c.interest.in_(c.interests)))
    if c.segments:
        audience = audience.where(await segments.audience_filter(session, list(c.segments)))
    return audience


async def _count_audience(session: AsyncSession, c: Campaign) -> int:
    audience = (await _audience(session, c)).subquery()
    return int((await session.execute(sa.select(func.count()).select_from(audience))).scalar_one())


async def count_audience(ctx: Ctx, choice: AudienceChoice) -> AudienceCount:
    """How many people a campaign with these lists, interests and segments would go to if started now."""
    async with ctx.db.read() as session:
        lists = await _resolve_lists(session, choice.lists)
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


async def _freeze_audience(session: AsyncSession, c: Campaign) -> int:
    """Insert one ledger row per eligible subscriber (on several lists: still one row)."""
    S = Subscriber.__table__  # type: ignore[attr-defined]
    D = Delivery.__table__  # type: ignore[attr-defined]
    audience = await _audience(session, c)
    now = utcnow()
    src = sa.select(
        sa.literal(c.id),
        S.c.id,
        sa.literal("campaign"),
        sa.literal(c.id + ":") + S.c.id,
        sa.literal("pending"),
        sa.literal(0),
        sa.literal(now, sa.DateTime(timezone=True)),
    ).where(S.c.id.in_(audience))
    await session.execute(
        D.insert().from_select(
            ["campaign_id", "subscriber_id", "kind", "dedupe_key", "status", "attempts", "created_at"], src
        )
    )
    return int(
        (await session.execute(sa.select(func.count()).select_from(D).where(D.c.campaign_id == c.id))).scalar_one()
    )


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
    engine = _engine(ctx)
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
            f"(subscriber {first_id}: {first_error}); correct the template or the subject and start it again",
            details={"failed": len(failures), "tried": len(sample), "subscriber_id": first_id, "error": first_error},
        )
    if failures:
        # Some recipients' own fields do not render (one subscriber's oversized attribute): those
        # deliveries fail one by one with the reason, the others go out.
        log.warning("campaign does not render for some recipients", campaign_id=c.id, failed=len(failures))


async def _start(session: AsyncSession, ctx: Ctx, c: Campaign) -> None:
    _apply(c, domain.CampaignAction.START)
    c.started_at = utcnow()
    c.recipients = await _freeze_audience(session, c)
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
    if c.recipients == 0:
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
            await _start(session, ctx, c)
        elif action == domain.CampaignAction.CANCEL:
            _apply(c, action)
            await session.execute(
                sa.update(Delivery)
                .where(col(Delivery.campaign_id) == c.id, col(Delivery.status) == "pending")
                .values(status="cancelled")
            )
            await _finish(session, ctx, c)
        else:
            _apply(c, action)
        out = await _campaign_public(session, c)
    engine = _engine(ctx)
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
        return await _campaign_public(session, c, stats=False)


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
    """Running campaigns with nothing left to send become finished; released rows of cancelled ones are cancelled."""
    finished = 0
    async with ctx.db.read() as session:
        running = (await session.execute(select(Campaign.id).where(Campaign.status == "running"))).scalars().all()
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
            if c.status != "running":
                continue
            await _finish(session, ctx, c)
            finished += 1
        engine = _engine(ctx)
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
    engine = _engine(ctx)
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


# -- bounces -------------------------------------------------------------------------


WEBHOOK_RECEIPT_KEEP = timedelta(minutes=15)
"""Longer than the five minutes a signed message stays acceptable: an older id cannot come back."""


async def report_bounce(ctx: Ctx, report: BounceReport, *, message_id: str) -> None:
    """The provider's (verified) bounce report; an unknown address, or a replayed message, changes nothing."""
    settings = ctx.settings
    async with ctx.db.transaction() as session:
        await session.execute(
            sa.delete(WebhookReceipt).where(col(WebhookReceipt.received_at) < utcnow() - WEBHOOK_RECEIPT_KEEP)
        )
        if await session.get(WebhookReceipt, message_id[:200]) is not None:
            return
        session.add(WebhookReceipt(id=message_id[:200]))
        sub = await _by_email(session, report.email)
        if sub is None:
            return
        campaign_id = report.campaign_id
        if campaign_id and await session.get(Campaign, campaign_id) is None:
            campaign_id = None
        await record_bounce_in(
            session,
            settings,
            ctx.source,
            subscriber_id=sub.id,
            kind=report.kind,
            reason=report.reason,
            campaign_id=campaign_id,
            origin=f"webhook:{settings.bounce_webhook_provider}"[:20],
        )


async def list_bounces(ctx: Ctx, page: PageParams) -> tuple[list[BouncePublic], int]:
    async with ctx.db.read() as session:
        total = (await session.execute(select(func.count()).select_from(Bounce))).scalar_one()
        rows = (
            (
                await session.execute(
                    select(Bounce).order_by(col(Bounce.at).desc()).offset(page.offset).limit(page.limit)
                )
            )
            .scalars()
            .all()
        )
    return [BouncePublic(**r.model_dump()) for r in rows], total


# -- GDPR ------------------------------------------------------------------------------


async def export_subscriber(ctx: Ctx, subscriber_id: str) -> dict[str, Any]:
    """Everything held about a subscriber."""
    async with ctx.db.read() as session:
        sub = await session.get(Subscriber, subscriber_id)
        if sub is None:
            raise NotFound(f"no subscriber {subscriber_id!r}")
        public = await _subscriber_public(session, sub)
        consents = (
            (
                await session.execute(
                    select(ConsentRecord).where(ConsentRecord.subscriber_id == sub.id).order_by(col(ConsentRecord.at))
                )
            )
            .scalars()
            .all()
        )
        bounces = (await session.execute(select(Bounce).where(Bounce.subscriber_id == sub.id))).scalars().all()
        deliveries = (
            (await session.execute(select(Delivery).where(Delivery.subscriber_id == sub.id).order_by(col(Delivery.id))))
            .scalars()
            .all()
        )
        contact = None
        if sub.contact_id:
            contact = await session.get(MemberContact, sub.contact_id)
    return {
        "subscriber": public.model_dump(mode="json"),
        "consent": [c.model_dump(mode="json", exclude={"subscriber_id"}) for c in consents],
        "bounces": [b.model_dump(mode="json", exclude={"subscriber_id"}) for b in bounces],
        "deliveries": [
            {"campaign_id": d.campaign_id, "status": d.status, "sent_at": d.sent_at and d.sent_at.isoformat()}
            for d in deliveries
        ],
        "member_contact": contact.model_dump(mode="json") if contact else None,
    }


async def _erase_in(session: AsyncSession, ctx: Ctx, sub: Subscriber) -> None:
    D = Delivery.__table__  # type: ignore[attr-defined]
    # Keep the ledger's counts, drop the person: rows are unlinked, pending ones are never sent.
    await session.execute(
        D.update()
        .where(D.c.subscriber_id == sub.id, D.c.status.in_(["pending", "sending"]))
        .values(status="skipped", claim_token=None)
    )
    await session.execute(
        D.update()
        .where(D.c.subscriber_id == sub.id)
        .values(
            subscriber_id=None,
            email=None,
            payload=None,
            smtp_reply=None,
            dedupe_key=sa.literal("erased:") + sa.cast(D.c.id, sa.String),
        )
    )
    await session.execute(D.delete().where(D.c.email == sub.email, D.c.status != "sent"))
    await session.execute(D.update().where(D.c.email == sub.email).values(email=None, payload=None, smtp_reply=None))
    await session.execute(sa.delete(MemberContact).where(col(MemberContact.email_sha256) == sub.email_sha256))
    if await session.get(Suppression, sub.email_sha256) is None:
        session.add(Suppression(email_sha256=sub.email_sha256, reason="erased"))
    ctx.db.request_scrub(session)
    for table in (SubscriberInterest, Subscription, ConsentRecord, Bounce):
        await session.execute(sa.delete(table).where(table.subscriber_id == sub.id))  # type: ignore[attr-defined,arg-type]
    await session.delete(sub)
    add_event(session, contracts.SubscriberErased(subscriber_id=sub.id), source=ctx.source)


async def erase_subscriber(ctx: Ctx, subscriber_id: str) -> None:
    async with ctx.db.transaction() as session:
        sub = await session.get(Subscriber, subscriber_id)
        if sub is None:
            raise NotFound(f"no subscriber {subscriber_id!r}")
        await _erase_in(session, ctx, sub)


async def find_subscriber_id(ctx: Ctx, email: str) -> str:
    async with ctx.db.read() as session:
        sub = await _by_email(session, email)
        if sub is None:
            raise NotFound(f"no subscriber with address {email}")
        return sub.id


# -- automation from other services' events ----------------------------------------------

WELCOME_TEXT = """Hello {first_name},

welcome to the Tuscan life-sciences cluster: {organisation} is now a member.

You will receive the cluster's newsletter and digest at this address, as you agreed.
Change what you receive: {preferences_url}
"""


def _queue_welcome(
    session: AsyncSession, settings: Settings, contact: MemberContact, org_name: str, sub: Subscriber
) -> None:
    links = links_for(settings, sub.id)
    text = WELCOME_TEXT.format(
        first_name=contact.first_name or contact.email, organisation=org_name, preferences_url=links["preferences_url"]
    )
    html = (
        f"<p>Hello {html_lib.escape(contact.first_name or contact.email)},</p>"
        f"<p>welcome to the Tuscan life-sciences cluster: <b>{html_lib.escape(org_name)}</b> is now a member.</p>"
        f'<p><a href="{html_lib.escape(links["preferences_url"])}">Choose what you receive</a></p>'
    )
    session.add(
        Delivery(
            kind="welcome",
            dedupe_key=f"welcome:{contact.organisation_id}:{contact.contact_id}",
            email=contact.email,
            payload={
                "subject": f"Welcome to the cluster, {org_name}",
                "text": text,
                "html": html,
                "to_name": f"{contact.first_name} {contact.last_name}".strip(),
            },
        )
    )


async def _member_subscriber(
    session: AsyncSession, settings: Settings, source: str, contact: MemberContact
) -> Subscriber | None:
    """Keep the contact's subscription to the members list in step with its newsletter consent."""
    members = await ensure_members_list(session, settings)
    sub = (
        await session.execute(select(Subscriber).where(Subscriber.contact_id == contact.contact_id))
    ).scalar_one_or_none() or await _by_email(session, contact.email)
    if not contact.consent_newsletter:
        if sub is not None:
            row = await session.get(Subscription, (sub.id, members.id))
            if row is not None and row.status != "unsubscribed":
                row.status = "unsubscribed"
                add_event(
                    session,
                    contracts.SubscriberUnsubscribed(subscriber_id=sub.id, lists=[members.slug], method="admin"),
                    source=source,
                )
        return None
    if sub is None:
        sub = Subscriber(
            email=contact.email,
            email_sha256=contact.email_sha256,
            name=domain.clean_header_text(f"{contact.first_name} {contact.last_name}", limit=200),
            language=contact.language,
            contact_id=contact.contact_id,
            confirmed_at=utcnow(),
        )
        session.add(sub)
        await session.flush()
    else:
        sub.contact_id = contact.contact_id
    changed = await _subscribe(session, sub, [members], "confirmed")
    if changed:
        session.add(
            ConsentRecord(
                subscriber_id=sub.id,
                action="consent-from-membership",
                lists=[members.slug],
                source=f"membership:contact:{contact.contact_id}",
                wording_version="membership",
            )
        )
        add_event(session, contracts.SubscriberConfirmed(subscriber_id=sub.id, lists=[members.slug]), source=source)
    return sub


async def contact_changed(session: AsyncSession, ctx: Ctx, ref: membership_contracts.ContactReference) -> None:
    """ContactAdded / ContactUpdated: consents and hash; the name and address are fetched later
    (``fetch_contact_details``), and only while the contact consents to the newsletter."""
    contact = await session.get(MemberContact, ref.contact_id)
    if contact is None:
        contact = MemberContact(
            contact_id=ref.contact_id, organisation_id=ref.organisation_id, email="", email_sha256=""
        )
        session.add(contact)
    suppressed = await session.get(Suppression, ref.email_sha256) is not None
    consent = ref.consent_newsletter and not suppressed
    if contact.email_sha256 != ref.email_sha256 or not consent:
        contact.email, contact.first_name, contact.last_name, contact.role = "", "", "", ""
    contact.organisation_id = ref.organisation_id
    contact.email_sha256 = ref.email_sha256
    contact.language = ref.language
    contact.consent_newsletter = consent
    contact.details_due = consent
    contact.updated_at = utcnow()
    await session.flush()
    if not consent:
        settings: Settings = ctx.settings  # type: ignore[assignment]
        await _member_subscriber(session, settings, ctx.source, contact)
    else:
        fetch = ctx.find(ContactFetch)
        if fetch is not None:
            fetch.wake.set()


async def _contact_known(session: AsyncSession, ctx: Ctx, contact: MemberContact) -> None:
    """A consenting contact's details are here: the members list and, if due, the welcome mail."""
    settings: Settings = ctx.settings  # type: ignore[assignment]
    sub = await _member_subscriber(session, settings, ctx.source, contact)
    org = await session.get(MemberOrganisation, contact.organisation_id)
    if (
        sub is not None
        and org is not None
        and org.first_joined_on is not None
        and org.first_joined_on >= date.today() - timedelta(days=settings.welcome_window_days)
    ):
        await _welcome_once(session, settings, contact, org.name, sub)


async def fetch_contact_details(ctx: Ctx, client: httpx.AsyncClient | None = None) -> int:
    """Ask membership, as ``service:newsletter``, for the name and address of consenting contacts.

    A 404 means the contact was erased meanwhile: the row is dropped. Any other failure leaves
    the row due for the next round. Returns how many contacts were completed.
    """
    settings: Settings = ctx.settings  # type: ignore[assignment]
    async with ctx.db.read() as session:
        due = (
            await session.execute(
                select(MemberContact.contact_id, MemberContact.updated_at)
                .where(col(MemberContact.details_due).is_(True))
                .order_by(col(MemberContact.updated_at))
                .limit(100)
            )
        ).all()
    if not due:
        return 0
    done = 0
    own_client = client is None
    http = client or httpx.AsyncClient(base_url=settings.membership_url, timeout=10)
    try:
        for contact_id, seen_at in due:
            try:
                response = await http.get(
                    f"/contacts/{quote(contact_id, safe='')}/personal-data", headers=_membership_headers(ctx)
                )
            except httpx.HTTPError as exc:
                log.warning("membership unreachable; contact details wait", error=repr(exc))
                return done
            if response.status_code not in (200, 404):
                log.warning("membership refused a contact fetch", status=response.status_code)
                return done
            async with ctx.db.transaction() as session:
                contact = await session.get(MemberContact, contact_id)
                if contact is None or not contact.details_due or _utc(contact.updated_at) != _utc(seen_at):
                    continue  # changed meanwhile: the newer state decides
                if response.status_code == 404:
                    await session.delete(contact)  # erased meanwhile: nothing to keep
                    continue
                data = response.json()
                try:
                    email = domain.normalise_email(str(data.get("email") or ""))
                except ValueError:
                    email = ""
                if (
                    not email
                    or domain.email_sha256(email) != contact.email_sha256
                    or not data.get("consent_newsletter")
                ):
                    continue  # an update is on its way; its event makes the row due again
                contact.email = email
                contact.first_name = domain.clean_header_text(str(data.get("first_name") or ""), limit=200)
                contact.last_name = domain.clean_header_text(str(data.get("last_name") or ""), limit=200)
                contact.role = " ".join(str(data.get("role") or "").split())[:200]
                contact.details_due = False
                await session.flush()
                await _contact_known(session, ctx, contact)
                done += 1
    finally:
        if own_client:
            await http.aclose()
    return done


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _membership_headers(ctx: Ctx) -> dict[str, str]:
    """This service's own credential (``service:newsletter``) for membership."""
    return ctx.service.service_headers("membership")


@dataclass
class ContactFetch:
    """The contact fetcher's doorbell (a singleton: ``ctx.get(ContactFetch)``)."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)


async def contact_fetcher(ctx: Ctx) -> None:
    """Background task: fetch due contact details when woken by an event, and every few seconds."""
    settings = ctx.settings
    wake = ctx.get(ContactFetch).wake
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), settings.contact_fetch_interval)
        wake.clear()
        try:
            await fetch_contact_details(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("contact fetch failed", error=repr(exc))


async def _welcome_once(
    session: AsyncSession, settings: Settings, contact: MemberContact, org_name: str, sub: Subscriber
) -> None:
    """Queue the welcome mail unless it was queued before, or segments marked ``welcome`` leave this contact out."""
    key = f"welcome:{contact.organisation_id}:{contact.contact_id}"
    if (await session.execute(select(Delivery.id).where(Delivery.dedupe_key == key))).first() is not None:
        return
    if not await segments.in_welcome_segment(session, sub.id):
        log.info("welcome not sent: the contact is in no welcome segment", organisation_id=contact.organisation_id)
        return
    _queue_welcome(session, settings, contact, org_name, sub)


async def contact_erased(session: AsyncSession, ctx: Ctx, contact_id: str, email_hash: str) -> None:
    """ContactErased: forget the contact and erase the subscriber with that address; keep its hash only."""
    if email_hash and await session.get(Suppression, email_hash) is None:
        session.add(Suppression(email_sha256=email_hash, reason="erased"))
    ctx.db.request_scrub(session)
    # Welcome mails queued for the contact (even with no subscriber left): never sent, content dropped.
    D = Delivery.__table__  # type: ignore[attr-defined]
    welcome = D.c.dedupe_key.like(f"welcome:%:{contact_id}")
    await session.execute(D.delete().where(welcome, D.c.status != "sent"))
    await session.execute(D.update().where(welcome).values(email=None, payload=None, smtp_reply=None))
    await session.execute(
        sa.delete(MemberContact).where(
            sa.or_(col(MemberContact.contact_id) == contact_id, col(MemberContact.email_sha256) == email_hash)
        )
    )
    subs = (
        (
            await session.execute(
                select(Subscriber).where(
                    sa.or_(col(Subscriber.email_sha256) == email_hash, col(Subscriber.contact_id) == contact_id)
                )
            )
        )
        .scalars()
        .all()
    )
    for sub in subs:
        await _erase_in(session, ctx, sub)


async def organisation_joined(session: AsyncSession, ctx: Ctx, event: membership_contracts.OrganisationJoined) -> None:
    """OrganisationJoined: a digest line always; on the first join, a welcome mail to consenting contacts."""
    settings = ctx.settings
    org = await session.get(MemberOrganisation, event.organisation_id)
    if org is None:
        org = MemberOrganisation(organisation_id=event.organisation_id, name=event.profile.name)
        session.add(org)
    org.name = event.profile.name
    if event.first_join and org.first_joined_on is None:
        org.first_joined_on = event.joined_on
    await add_digest_item(
        session,
        kind="new_member",
        ref=f"joined:{event.organisation_id}:{event.joined_on.isoformat()}",
        title=event.profile.name,
        detail=", ".join(x for x in [event.profile.city or "", *event.profile.sectors] if x),
        occurred_on=event.joined_on,
        sectors=event.profile.sectors,
    )
    if not event.first_join:
        return
    await session.flush()
    contacts = (
        (
            await session.execute(
                select(MemberContact).where(
                    MemberContact.organisation_id == event.organisation_id,
                    col(MemberContact.consent_newsletter).is_(True),
                    col(MemberContact.details_due).is_(False),  # the rest get theirs when fetched
                )
            )
        )
        .scalars()
        .all()
    )
    for contact in contacts:
        sub = await _member_subscriber(session, settings, ctx.source, contact)
        if sub is not None:
            await _welcome_once(session, settings, contact, event.profile.name, sub)


async def add_digest_item(
    session: AsyncSession,
    *,
    kind: str,
    ref: str,
    title: str,
    detail: str = "",
    occurred_on: date | None = None,
    sectors: list[str] | None = None,
) -> None:
    """Keep one line for the next digest (an event seen twice adds nothing)."""
    if (await session.execute(select(DigestItem.id).where(DigestItem.ref == ref))).first() is None:
        tags = list(dict.fromkeys(" ".join(x.split()).lower()[:200] for x in sectors or [] if x.strip()))[:50]
        session.add(
            DigestItem(
                kind=kind, ref=ref, title=title[:500], detail=detail[:2000], occurred_on=occurred_on, sectors=tags
            )
        )


DIGEST_TEMPLATE = "Digest (built-in)"
DIGEST_HTML = """<h1>{{ campaign.name }}</h1>
{% for section in campaign.data.sections %}<h2>{{ section.title }}</h2><ul>
{% for item in section["items"] %}<li><b>{{ item.title }}</b>{% if item.detail %} — {{ item.detail }}{% endif %}</li>
{% endfor %}</ul>{% endfor %}"""
DIGEST_TEXT = """{{ campaign.name }}
{% for section in campaign.data.sections %}
{{ section.title }}
{% for item in section["items"] %}- {{ item.title }}{% if item.detail %} — {{ item.detail }}{% endif %}
{% endfor %}{% endfor %}"""
SECTIONS = [
    ("new_member", "New members"),
    ("milestone", "Project milestones"),
    ("deadline", "Deadlines"),
    ("project", "New projects"),
    ("opportunity", "Matchmaking opportunities"),
]


async def build_digest(ctx: Ctx) -> CampaignPublic | None:
    """Gather the lines kept since the last digest into a campaign to the members list (draft or started)."""
    settings = ctx.settings
    async with ctx.db.transaction() as session:
        items = (
            (
                await session.execute(
                    select(DigestItem).where(col(DigestItem.campaign_id).is_(None)).order_by(col(DigestItem.created_at))
                )
            )
            .scalars()
            .all()
        )
        if not items:
            return None
        template = (
            await session.execute(select(Template).where(Template.name == DIGEST_TEMPLATE))
        ).scalar_one_or_none()
        if template is None:
            template = Template(
                name=DIGEST_TEMPLATE, subject="{{ campaign.name }}", body_html=DIGEST_HTML, body_text=DIGEST_TEXT
            )
            session.add(template)
        members = await ensure_members_list(session, settings)

        def sections_for(target: segments.Segment | None) -> list[dict[str, Any]]:
            sections = []
            for kind, title in SECTIONS:
                lines = [
                    {"title": i.title, "detail": i.detail}
                    for i in items
                    if i.kind == kind and (target is None or segments.keeps_line(target, kind, list(i.sectors or [])))
                ]
                if lines:
                    sections.append({"title": title, "items": lines})
            return sections

        # Segments marked ``digest``: one campaign per segment, to its members only, with the lines that
        # concern it (a segment left with no line gets no digest); none marked: the whole list, every line.
        targets: list[segments.Segment | None] = [*await segments.digest_segments(session)] or [None]
        built: list[Campaign] = []
        for target in targets:
            sections = sections_for(target)
            if not sections:
                continue
            name = f"Cluster digest {date.today().isoformat()}"
            c = Campaign(
                name=f"{name} — {target.name}" if target is not None else name,
                subject="{{ campaign.name }}",
                template_id=template.id,
                lists=[members.id],
                segments=[target.id] if target is not None else [],
                data={"sections": sections},
                kind="digest",
            )
            session.add(c)
            await session.flush()
            built.append(c)
        if not built:
            return None  # the lines wait for a segment they concern
        for i in items:
            i.campaign_id = built[0].id
        if settings.digest_mode == "send":
            for c in built:
                await _start(session, ctx, c)
        out = await _campaign_public(session, built[0], stats=False)
    _wake(ctx)
    return out
