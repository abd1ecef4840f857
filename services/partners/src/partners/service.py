"""Use cases of the partners service: partners, webhook endpoints, replay, the delivery log (the
public-event log is :mod:`partners.log`, direct Kafka access :mod:`partners.kafka_grants`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.db import Database
from distretto_shared.identity import Principal, Role
from distretto_shared.web import Conflict, Forbidden, Invalid, NotFound
from partners import domain, kafka_grants
from partners.config import Settings
from partners.log import Notifier, endpoint_types, now
from partners.models import (
    KafkaAccessOut,
    Partner,
    PartnerCreate,
    PartnerUpdate,
    PublicEventRow,
    WebhookEndpoint,
    WebhookMessage,
)


@dataclass
class Deps:
    """What the use cases need."""

    db: Database
    settings: Settings
    notifier: Notifier


def require_admin(principal: Principal) -> None:
    """Partner administration is the platform admin's."""
    if principal.role != Role.ADMIN:
        raise Forbidden("Only an admin manages partners")


async def create_partner(deps: Deps, data: PartnerCreate) -> tuple[Partner, KafkaAccessOut | None]:
    """Create a partner with its granted types (and the API key it streams with); with ``data.kafka``,
    its Kafka user and ACLs first — a broker that refuses leaves no partner and no user behind."""
    async with deps.db.read() as session:
        if data.api_key_id and await _by_key(session, data.api_key_id):
            raise Conflict("This API key already belongs to a partner")
    stamp = now()
    partner = Partner(
        name=data.name,
        event_types=data.event_types,
        api_key_id=data.api_key_id,
        contact_email=data.contact_email,
        created_at=stamp,
        updated_at=stamp,
    )
    kafka = None
    if data.kafka:
        kafka = await asyncio.to_thread(kafka_grants.grant_sync, deps.settings, partner.id, data.event_types, True)
        partner.kafka_user = kafka.username
    try:
        async with deps.db.transaction() as session:
            if data.api_key_id and await _by_key(session, data.api_key_id):
                raise Conflict("This API key already belongs to a partner")
            session.add(partner)
    except BaseException:
        if kafka is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(kafka_grants.revoke_sync, deps.settings, partner.id)
        raise
    return partner, kafka


async def grant_kafka(deps: Deps, partner_id: str) -> KafkaAccessOut:
    """Give an active partner direct Kafka access, or a new password (the old one stops working)."""
    partner = await get_partner(deps, partner_id)
    if not partner.active:
        raise Conflict("The partner is inactive: activate it first")
    kafka = await asyncio.to_thread(
        kafka_grants.grant_sync, deps.settings, partner.id, partner.event_types, partner.kafka_user is None
    )
    async with deps.db.transaction() as session:
        row = await session.get(Partner, partner_id)
        if row is None:  # deleted meanwhile: take the access back
            await asyncio.to_thread(kafka_grants.revoke_sync, deps.settings, partner_id)
            raise NotFound("No such partner")
        row.kafka_user = kafka.username
        row.updated_at = now()
        session.add(row)
    return kafka


async def revoke_kafka(deps: Deps, partner_id: str) -> Partner:
    """Remove the partner's Kafka user and every ACL of it (idempotent)."""
    await get_partner(deps, partner_id)
    await asyncio.to_thread(kafka_grants.revoke_sync, deps.settings, partner_id)
    async with deps.db.transaction() as session:
        row = await session.get(Partner, partner_id)
        if row is None:
            raise NotFound("No such partner")
        row.kafka_user = None
        row.updated_at = now()
        session.add(row)
    return row


async def _by_key(session: AsyncSession, api_key_id: str) -> Partner | None:
    return (await session.execute(select(Partner).where(Partner.api_key_id == api_key_id))).scalars().first()


async def list_partners(deps: Deps, limit: int, offset: int) -> tuple[list[Partner], int]:
    """Partners by name."""
    async with deps.db.read() as session:
        total = (await session.execute(sa.select(sa.func.count()).select_from(Partner))).scalar_one()
        rows = (
            await session.execute(select(Partner).order_by(Partner.name, Partner.id).limit(limit).offset(offset))
        ).scalars()
        return list(rows), int(total)


async def get_partner(deps: Deps, partner_id: str) -> Partner:
    """One partner or 404."""
    async with deps.db.read() as session:
        partner = await session.get(Partner, partner_id)
    if partner is None:
        raise NotFound("No such partner")
    return partner


async def update_partner(deps: Deps, partner_id: str, data: PartnerUpdate) -> Partner:
    """Change a partner's name, grant, key or state (inactive: no stream, no new webhook messages)."""
    current = await get_partner(deps, partner_id)
    changes = data.model_dump(exclude_unset=True)
    if current.kafka_user:
        # Kafka first: a broker that refuses leaves the partner as it was (grant and access agree).
        if changes.get("active") is False:
            await asyncio.to_thread(kafka_grants.revoke_sync, deps.settings, partner_id)
            changes["kafka_user"] = None
        elif changes.get("event_types") and set(changes["event_types"]) != set(current.event_types):
            await asyncio.to_thread(kafka_grants.converge_sync, deps.settings, partner_id, changes["event_types"])
    async with deps.db.transaction() as session:
        partner = await session.get(Partner, partner_id)
        if partner is None:
            raise NotFound("No such partner")
        new_key = changes.get("api_key_id")
        if new_key and new_key != partner.api_key_id and await _by_key(session, new_key):
            raise Conflict("This API key already belongs to a partner")
        if "contact_email" in changes and partner.contact_email and changes["contact_email"] != partner.contact_email:
            deps.db.request_scrub(session)  # the old address (personal data, maybe) leaves the disk too
        for field, value in changes.items():
            if value is not None or field in ("api_key_id", "contact_email", "kafka_user"):
                setattr(partner, field, value)
        partner.updated_at = now()
        session.add(partner)
    return partner


async def erase_contact_address(session: AsyncSession, db: Database, email_hash: str) -> int:
    """GDPR erasure of a person (membership's ContactErased, found by the SHA-256 of the lower-cased,
    trimmed address): every partner whose contact address is theirs loses it — notices then wait with
    "the partner has no contact address" — and the old bytes are scrubbed from disk after the commit.
    The number of partners changed (0: nothing of theirs here; a repeat changes nothing)."""
    rows = (await session.execute(select(Partner).where(col(Partner.contact_email).is_not(None)))).scalars().all()
    changed = 0
    for partner in rows:
        if domain.email_sha256(partner.contact_email or "") == email_hash:
            partner.contact_email = None
            partner.updated_at = now()
            session.add(partner)
            changed += 1
    if changed:
        db.request_scrub(session)
    return changed


async def partner_of(deps: Deps, principal: Principal) -> Partner:
    """The active partner a caller is (an API key of role partner that a partner record holds)."""
    if principal.role != Role.PARTNER or not principal.id.startswith("apikey:"):
        raise Forbidden("The stream is for partner systems: call with the partner's API key")
    async with deps.db.read() as session:
        partner = await _by_key(session, principal.id.removeprefix("apikey:"))
    if partner is None or not partner.active:
        raise Forbidden("This API key belongs to no active partner")
    return partner


async def still_granted(deps: Deps, partner_id: str, types: Sequence[str]) -> list[str]:
    """Which of ``types`` the partner may still receive (none when it is inactive or gone)."""
    async with deps.db.read() as session:
        partner = await session.get(Partner, partner_id)
    if partner is None or not partner.active:
        return []
    return [t for t in types if t in partner.event_types]


# --- webhook endpoints


async def check_url(settings: Settings, url: str) -> str:
    """A receiver URL: http(s) with a host; https unless the setting allows plain http; a host
    that is not an internal address (unless the admin setting allows them)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Invalid("The endpoint URL must be an absolute http(s) URL")
    if parts.scheme != "https" and settings.webhook_require_https:
        raise Invalid("The endpoint URL must use https")
    if parts.username or parts.password:
        raise Invalid("The endpoint URL must not carry credentials")
    try:
        port = parts.port
    except ValueError as exc:
        raise Invalid("The endpoint URL has an invalid port") from exc
    if not settings.webhook_allow_private_addresses:
        problem = await domain.internal_address_problem(parts.hostname, port or 443)
        if problem:
            raise Invalid(f"The endpoint URL is not allowed: {problem}")
    return url


async def create_endpoint(deps: Deps, partner_id: str, url: str, types: list[str]) -> tuple[WebhookEndpoint, str]:
    """Add a webhook receiver to a partner; its signing secret (stored sealed) is returned this once."""
    await check_url(deps.settings, url)
    async with deps.db.transaction() as session:
        partner = await session.get(Partner, partner_id)
        if partner is None:
            raise NotFound("No such partner")
        outside = sorted(set(types) - set(partner.event_types))
        if outside:
            raise Invalid(f"The partner may not receive: {', '.join(outside)}")
        secret = domain.new_secret()
        endpoint = WebhookEndpoint(
            partner_id=partner_id,
            url=url,
            event_types=types,
            secret=deps.settings.webhook_sealer().seal(secret),
            created_at=now(),
        )
        session.add(endpoint)
    return endpoint, secret


async def get_endpoint(deps: Deps, endpoint_id: str) -> WebhookEndpoint:
    """One endpoint or 404."""
    async with deps.db.read() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("No such webhook endpoint")
    return endpoint


async def list_endpoints(deps: Deps, partner_id: str) -> list[WebhookEndpoint]:
    """A partner's endpoints."""
    async with deps.db.read() as session:
        rows = await session.execute(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.partner_id == partner_id)
            .order_by(col(WebhookEndpoint.created_at))
        )
        return list(rows.scalars())


async def rotate_secret(deps: Deps, endpoint_id: str) -> tuple[WebhookEndpoint, str]:
    """A new signing secret (returned this once); the previous one keeps signing beside it for the overlap.
    Both are stored sealed (the previous one sealed again under the current key)."""
    sealer = deps.settings.webhook_sealer()
    secret = domain.new_secret()
    async with deps.db.transaction() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            raise NotFound("No such webhook endpoint")
        endpoint.previous_secret = sealer.seal(sealer.open(endpoint.secret))
        endpoint.previous_secret_until = now() + timedelta(seconds=deps.settings.webhook_secret_overlap_seconds)
        endpoint.secret = sealer.seal(secret)
        session.add(endpoint)
    return endpoint, secret


async def set_enabled(deps: Deps, endpoint_id: str, enabled: bool) -> WebhookEndpoint:
    """Enable (clearing the failure streak) or disable an endpoint by hand."""
    async with deps.db.transaction() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            raise NotFound("No such webhook endpoint")
        endpoint.enabled = enabled
        endpoint.disabled_reason = None if enabled else "disabled by an admin"
        endpoint.failing_since = None
        endpoint.notice_due = False  # a hand's change needs no notice (nor does one not yet sent)
        session.add(endpoint)
        if enabled:
            # Messages that waited while it was off go now.
            await session.execute(
                sa.update(WebhookMessage)
                .where(col(WebhookMessage.endpoint_id) == endpoint_id, col(WebhookMessage.status) == "pending")
                .values(next_attempt_at=now())
            )
    deps.notifier.notify()
    return endpoint


async def replay(deps: Deps, endpoint_id: str, event_id: str | None, since: datetime | None) -> int:
    """Queue one event again, or every event since a time, for an endpoint (after what is pending)."""
    if (event_id is None) == (since is None):
        raise Invalid("Give either event_id or since")
    async with deps.db.transaction() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            raise NotFound("No such webhook endpoint")
        partner = await session.get(Partner, endpoint.partner_id)
        assert partner is not None
        types = endpoint_types(endpoint, partner)
        query = select(PublicEventRow).where(col(PublicEventRow.event_type).in_(sorted(types)))
        if event_id is not None:
            query = query.where(PublicEventRow.event_id == event_id)
        else:
            assert since is not None
            query = query.where(col(PublicEventRow.created_at) >= since)
        rows = list((await session.execute(query.order_by(col(PublicEventRow.seq)))).scalars())
        if event_id is not None and not rows:
            raise NotFound("No such event for this endpoint")
        stamp = now()
        for row in rows:
            assert row.seq is not None
            session.add(
                WebhookMessage(
                    endpoint_id=endpoint.id,
                    seq=row.seq,
                    event_id=row.event_id,
                    event_type=row.event_type,
                    next_attempt_at=stamp,
                    created_at=stamp,
                    replay=True,
                )
            )
    deps.notifier.notify()
    return len(rows)


async def messages(deps: Deps, endpoint_id: str, limit: int, offset: int) -> tuple[list[WebhookMessage], int]:
    """An endpoint's messages, newest first."""
    from partners.models import WebhookMessage as M

    async with deps.db.read() as session:
        total = (
            await session.execute(sa.select(sa.func.count()).select_from(M).where(col(M.endpoint_id) == endpoint_id))
        ).scalar_one()
        rows = await session.execute(
            select(M).where(M.endpoint_id == endpoint_id).order_by(col(M.id).desc()).limit(limit).offset(offset)
        )
        return list(rows.scalars()), int(total)


async def attempts(deps: Deps, endpoint_id: str, limit: int, offset: int) -> tuple[list, int]:  # type: ignore[type-arg]
    """An endpoint's delivery log (every HTTP attempt), newest first."""
    from partners.models import WebhookAttempt as A

    async with deps.db.read() as session:
        total = (
            await session.execute(sa.select(sa.func.count()).select_from(A).where(col(A.endpoint_id) == endpoint_id))
        ).scalar_one()
        rows = await session.execute(
            select(A).where(A.endpoint_id == endpoint_id).order_by(col(A.id).desc()).limit(limit).offset(offset)
        )
        return list(rows.scalars()), int(total)
