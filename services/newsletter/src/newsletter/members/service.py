"""Automation from membership's events: member contacts as subscribers, welcome mails, erasure."""

from __future__ import annotations

import asyncio
import html as html_lib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.contracts import membership as membership_contracts
from distretto_shared.contracts import newsletter as contracts
from distretto_shared.logging import get_logger
from distretto_shared.outbox import add_event
from distretto_shared.waits import woken
from newsletter import domain, segments
from newsletter.bounces.models import Suppression
from newsletter.config import Settings
from newsletter.consent.models import ConsentRecord
from newsletter.context import Ctx
from newsletter.delivery.models import Delivery
from newsletter.digest.service import add_digest_item
from newsletter.links import links_for
from newsletter.lists.service import ensure_members_list
from newsletter.members.models import MemberContact, MemberOrganisation
from newsletter.subscribers.models import Subscriber, Subscription
from newsletter.subscribers.service import by_email, erase_in, subscribe
from newsletter.tables import utcnow

log = get_logger(__name__)


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
    ).scalar_one_or_none() or await by_email(session, contact.email)
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
    changed = await subscribe(session, sub, [members], "confirmed")
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


async def _welcome_turn(session: AsyncSession, organisation_id: str) -> None:
    """Take the organisation's welcome turn until the commit: the join's handler and the contact
    fetcher decide on its welcome mails one after the other.

    On PostgreSQL (read committed) they could otherwise both decide "the other one sends it": the
    join's handler selects the organisation's contacts before a contact row is committed, the fetcher
    completes that contact and reads the organisation before the join is committed — no welcome at
    all (seen in the cluster test: one contact of 24, whose events arrived together after a broker
    failover). With the turn, whichever comes second sees what the first committed. Taken before any
    row lock of the transaction. SQLite runs one writer at a time: nothing to take.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"newsletter.welcome:{organisation_id}"},
        )


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
                if contact is not None:
                    await _welcome_turn(session, contact.organisation_id)
                    contact = await session.get(MemberContact, contact_id, populate_existing=True)
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
        await woken(wake, settings.contact_fetch_interval)
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
    # campaign_id IS NULL: the predicate of the key's (partial) unique index
    queued = select(Delivery.id).where(Delivery.dedupe_key == key, col(Delivery.campaign_id).is_(None))
    if (await session.execute(queued)).first() is not None:
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
        await erase_in(session, ctx, sub)


async def organisation_joined(session: AsyncSession, ctx: Ctx, event: membership_contracts.OrganisationJoined) -> None:
    """OrganisationJoined: a digest line always; on the first join, a welcome mail to consenting contacts."""
    settings = ctx.settings
    await _welcome_turn(session, event.organisation_id)
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
    # Every contact row of the organisation, locked: the contact fetcher (another task, or another
    # instance) completing one of them at this moment either committed first — then this reads its
    # details and queues the mail — or waits for this commit and then finds the organisation joined
    # and queues it itself. Filtering on `details_due` in SQL would skip the row it is completing
    # (PostgreSQL re-checks a locked row only if it matched before) and both would leave the mail
    # to the other: no welcome at all.
    rows = (
        (
            await session.execute(
                select(MemberContact)
                .where(MemberContact.organisation_id == event.organisation_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        .scalars()
        .all()
    )
    # The rest get theirs when their details are fetched.
    contacts = [c for c in rows if c.consent_newsletter and not c.details_due]
    for contact in contacts:
        sub = await _member_subscriber(session, settings, ctx.source, contact)
        if sub is not None:
            await _welcome_once(session, settings, contact, event.profile.name, sub)
