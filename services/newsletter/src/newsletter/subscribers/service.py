"""Use cases of subscribers: staff's register, and the GDPR export and erasure."""

from __future__ import annotations

import html as html_lib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, func, or_, select

from distretto_shared.contracts import newsletter as contracts
from distretto_shared.conventions import canonical_id
from distretto_shared.db import contains_text
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, NotFound, PageParams
from newsletter import domain
from newsletter.bounces.models import Bounce, Suppression
from newsletter.config import Settings
from newsletter.consent.models import ConsentRecord
from newsletter.context import Ctx, wake
from newsletter.delivery.models import Delivery
from newsletter.lists.models import MailingList
from newsletter.lists.service import find_list, resolve_lists
from newsletter.members.models import MemberContact
from newsletter.subscribers.models import (
    Subscriber,
    SubscriberCreate,
    SubscriberInterest,
    SubscriberPublic,
    SubscriberUpdate,
    Subscription,
    SubscriptionPublic,
)
from newsletter.tables import new_id, utcnow

# -- subscribers -------------------------------------------------------------------


async def set_interests(session: AsyncSession, subscriber_id: str, interests: Sequence[str], *, replace: bool) -> None:
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


async def subscriber_public(session: AsyncSession, sub: Subscriber) -> SubscriberPublic:
    return (await subscribers_public(session, [sub]))[0]


async def subscribers_public(session: AsyncSession, subs: Sequence[Subscriber]) -> list[SubscriberPublic]:
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


async def by_email(session: AsyncSession, email: str) -> Subscriber | None:
    return (await session.execute(select(Subscriber).where(Subscriber.email == email))).scalar_one_or_none()


async def subscribe(
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
        if await by_email(session, data.email):
            raise Conflict(f"{data.email} is already a subscriber")
        lists = await resolve_lists(session, data.lists) if data.lists else []
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
        await subscribe(session, sub, lists, "confirmed" if data.preconfirmed else "unconfirmed")
        await set_interests(session, sub.id, data.interests, replace=True)
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
            queue_confirmation(session, settings, sub)
        out = await subscriber_public(session, sub)
    wake(ctx)
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
            lst = await find_list(session, list_ref)
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
        return await subscribers_public(session, rows), total


async def get_subscriber(ctx: Ctx, subscriber_id: str) -> SubscriberPublic:
    async with ctx.db.read() as session:
        sub = await session.get(Subscriber, subscriber_id)
        if sub is None:
            raise NotFound(f"no subscriber {canonical_id(subscriber_id)!r}")
        return await subscriber_public(session, sub)


async def update_subscriber(ctx: Ctx, subscriber_id: str, data: SubscriberUpdate) -> SubscriberPublic:
    async with ctx.db.transaction() as session:
        sub = await session.get(Subscriber, subscriber_id)
        if sub is None:
            raise NotFound(f"no subscriber {canonical_id(subscriber_id)!r}")
        if data.name is not None:
            sub.name = domain.clean_header_text(data.name, limit=200)
        if data.language is not None:
            sub.language = data.language
        if data.attributes is not None:
            sub.attributes = data.attributes
        if data.interests is not None:
            await set_interests(session, sub.id, data.interests, replace=True)
        sub.updated_at = utcnow()
        return await subscriber_public(session, sub)


# -- double opt-in -----------------------------------------------------------------


CONFIRM_TEXT = """Hello {name},

please confirm that you want to receive the newsletter of the Tuscan life-sciences cluster
(lists: {lists}) by opening this link:

{url}

The link expires on {expires}. If you did not ask for this, ignore this mail: nothing happens.
"""


def queue_confirmation(session: AsyncSession, settings: Settings, sub: Subscriber, lists: Sequence[str] = ()) -> None:
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


# -- GDPR ------------------------------------------------------------------------------


def _dashed(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as answered: its own and its campaign's ids dashed (docs/api-conventions.md, "Ids")."""
    return {k: canonical_id(v) if k in ("id", "campaign_id") else v for k, v in row.items()}


async def export_subscriber(ctx: Ctx, subscriber_id: str) -> dict[str, Any]:
    """Everything held about a subscriber."""
    async with ctx.db.read() as session:
        sub = await session.get(Subscriber, subscriber_id)
        if sub is None:
            raise NotFound(f"no subscriber {canonical_id(subscriber_id)!r}")
        public = await subscriber_public(session, sub)
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
        "consent": [_dashed(c.model_dump(mode="json", exclude={"subscriber_id"})) for c in consents],
        "bounces": [_dashed(b.model_dump(mode="json", exclude={"subscriber_id"})) for b in bounces],
        "deliveries": [
            {
                "campaign_id": canonical_id(d.campaign_id),
                "status": d.status,
                "sent_at": d.sent_at and d.sent_at.isoformat(),
            }
            for d in deliveries
        ],
        "member_contact": contact.model_dump(mode="json") if contact else None,
    }


async def erase_in(session: AsyncSession, ctx: Ctx, sub: Subscriber) -> None:
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
            raise NotFound(f"no subscriber {canonical_id(subscriber_id)!r}")
        await erase_in(session, ctx, sub)


async def find_subscriber_id(ctx: Ctx, email: str) -> str:
    async with ctx.db.read() as session:
        sub = await by_email(session, email)
        if sub is None:
            raise NotFound(f"no subscriber with address {email}")
        return sub.id
