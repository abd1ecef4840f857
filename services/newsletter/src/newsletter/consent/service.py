"""Use cases of consent: double opt-in sign-up and confirmation, preferences, unsubscribe."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.contracts import newsletter as contracts
from distretto_shared.conventions import hex_id
from distretto_shared.outbox import add_event
from distretto_shared.web import Invalid, NotFound
from newsletter import domain
from newsletter.campaigns.models import Campaign
from newsletter.config import Settings
from newsletter.consent.models import ConsentRecord, Preferences, RateHit, SignUp
from newsletter.context import Client, Ctx, Gone, RateLimited, aware, wake
from newsletter.lists.models import MailingList
from newsletter.lists.service import resolve_lists
from newsletter.subscribers.models import Subscriber, SubscriberInterest, SubscriberPublic, Subscription
from newsletter.subscribers.service import by_email, queue_confirmation, set_interests, subscribe, subscriber_public
from newsletter.tables import utcnow


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
    wait = domain.retry_after([aware(t) or now for t in times], now=now, window=window, limit=limit)
    if wait is not None:
        raise RateLimited(f"too many sign-ups from this {scope}; try again in {wait} s", retry_after=wait)


async def sign_up(ctx: Ctx, data: SignUp, client: Client) -> None:
    """Public sign-up: records consent, puts the subscriber on public lists unconfirmed, mails a signed link.

    The answer is the same whether the address is new, known or suppressed (no address probing).
    """
    settings = ctx.settings
    async with ctx.db.transaction() as session:
        lists = await resolve_lists(session, data.lists, public_only=True)
        address_key = domain.email_sha256(data.email)
        await _rate_check(session, settings, "address", address_key, settings.signup_limit_per_address)
        client_key = (client.address or "unknown")[:100]
        await _rate_check(session, settings, "client", client_key, settings.signup_limit_per_client)
        session.add(RateHit(scope="address", key=address_key))
        session.add(RateHit(scope="client", key=client_key))
        sub = await by_email(session, data.email)
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
        changed = await subscribe(session, sub, lists, "unconfirmed")
        await set_interests(session, sub.id, data.interests, replace=False)
        if changed:
            queue_confirmation(session, settings, sub, [lst.slug for lst in changed])
    wake(ctx)


def verify_token(settings: Settings, token: str, purpose: str) -> domain.TokenClaims:
    """The claims of a valid link. The ids it names (the subscriber, the campaign) are read in either
    form and given as the 32-hex form the tables store: links already sent carry that form, and they
    keep working whichever form a link signed later carries (docs/api-conventions.md, "Ids")."""
    try:
        claims = domain.verify_token(settings.secret_key, token, purpose, now=utcnow())
    except domain.BadToken as exc:
        if "expired" in str(exc):
            raise Gone(str(exc)) from exc
        raise Invalid(str(exc)) from exc
    return domain.TokenClaims(purpose=claims.purpose, subject=hex_id(claims.subject), extra=hex_id(claims.extra))


async def confirm(ctx: Ctx, token: str, client: Client) -> list[str]:
    """Confirm the double opt-in; returns the slugs of the lists now confirmed."""
    settings = ctx.settings
    claims = verify_token(settings, token, "confirm")
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
    claims = verify_token(ctx.settings, token, "preferences")
    async with ctx.db.read() as session:
        sub = await session.get(Subscriber, claims.subject)
        if sub is None:
            raise NotFound("this subscription no longer exists")
        public = await subscriber_public(session, sub)
        mine = {hex_id(s.list_id) for s in public.subscriptions}  # answered dashed, stored 32-hex
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
    claims = verify_token(settings, token, "preferences")
    async with ctx.db.transaction() as session:
        sub = await session.get(Subscriber, claims.subject)
        if sub is None:
            raise NotFound("this subscription no longer exists")
        current = {
            s.list_id: s
            for s in (await session.execute(select(Subscription).where(Subscription.subscriber_id == sub.id))).scalars()
        }
        wanted = [] if prefs.unsubscribe_all else await resolve_lists(session, prefs.lists)
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
        await set_interests(session, sub.id, prefs.interests, replace=True)
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
        return await subscriber_public(session, sub)


def check_unsubscribe_token(settings: Settings, token: str) -> domain.TokenClaims:
    """Verify an unsubscribe link (for the page that shows the button)."""
    return verify_token(settings, token, "unsubscribe")


async def unsubscribe(ctx: Ctx, token: str, *, method: str, client: Client) -> list[str]:
    """One step: leave the lists the campaign went to (every list when the link names none)."""
    settings = ctx.settings
    claims = verify_token(settings, token, "unsubscribe")
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
