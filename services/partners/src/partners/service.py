"""Use cases of the partners service: projection, partners, webhook endpoints, replay, the log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.contracts import public as pub
from distretto_shared.db import Database
from distretto_shared.identity import Principal, Role
from distretto_shared.kafka_security import (
    KafkaAccess,
    KafkaAccessError,
    new_password,
    partner_acls,
    partner_user,
    principal_of,
)
from distretto_shared.outbox import add_event
from distretto_shared.topics import topic_name
from distretto_shared.web import Conflict, DomainError, Forbidden, Invalid, NotFound
from partners import domain
from partners.config import Settings
from partners.models import (
    KafkaAccessOut,
    Partner,
    PartnerCreate,
    PartnerUpdate,
    PublicEventRow,
    WebhookEndpoint,
    WebhookMessage,
)

SOURCE = "/distretto/partners"
LOG_LOCK_KEY = 0x5041_5254  # "PART": serialises appends to the public-event log on PostgreSQL


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Notifier:
    """Wakes every waiter (streams, delivery workers) after a commit that appended to the log."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake all current waiters."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Wait for the next notification (True) or the timeout (False)."""
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False


class LogTail:
    """The newest position of the public-event log, watched by one task per process for all its
    streams: a stream that has read everything waits here instead of querying the database, so
    a thousand idle streams cost one small query per poll, not a thousand."""

    def __init__(self, db: Database, notifier: Notifier, poll_seconds: float) -> None:
        self.db = db
        self.notifier = notifier
        self.poll_seconds = poll_seconds
        self.last_seq = 0
        self._moved = Notifier()

    async def refresh(self) -> int:
        """Read the newest position; wake the waiting streams when it moved."""
        async with self.db.read() as session:
            newest = (await session.execute(sa.select(sa.func.max(PublicEventRow.seq)))).scalar()
        if newest is not None and int(newest) > self.last_seq:
            self.last_seq = int(newest)
            self._moved.notify()
        return self.last_seq

    async def run(self) -> None:
        """Follow the log until cancelled (woken by this process's commits, polling for the others')."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: the streams wait, then go on
                pass
            await self.notifier.wait(self.poll_seconds)

    async def wait_beyond(self, position: int, timeout: float) -> bool:
        """Wait until the log has a position after ``position`` (True) or the timeout (False)."""
        if self.last_seq > position:
            return True
        await self._moved.wait(timeout)
        return self.last_seq > position


@dataclass
class Deps:
    """What the use cases need."""

    db: Database
    settings: Settings
    notifier: Notifier


# --- projection (called from the consumers, inside their transaction)


async def publish_public(session: AsyncSession, event: pub.PublicEvent, internal_id: str) -> PublicEventRow:
    """Append a public event: the outbox (→ ``public.*`` topic), the log (→ SSE) and one webhook
    message per endpoint that may receive it — all in the caller's transaction, with one id."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        # Positions must become visible in order: a stream that saw seq 11 must never later find a 10.
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOG_LOCK_KEY})
    event_id = domain.public_event_id(internal_id, event.event_type)
    existing = (
        (await session.execute(select(PublicEventRow).where(PublicEventRow.event_id == event_id))).scalars().first()
    )
    if existing is not None:
        return existing
    row = add_event(session, event, source=SOURCE, event_id=event_id)
    log_row = PublicEventRow(
        event_id=event_id,
        event_type=event.event_type,
        subject=event.subject(),
        source=SOURCE,
        time=row.headers["ce_time"],
        payload=row.payload,
        created_at=now(),
    )
    session.add(log_row)
    await session.flush()
    assert log_row.seq is not None
    endpoints = (
        await session.execute(
            select(WebhookEndpoint, Partner)
            .join(Partner, col(Partner.id) == col(WebhookEndpoint.partner_id))
            .where(col(WebhookEndpoint.enabled).is_(True), col(Partner.active).is_(True))
        )
    ).all()
    stamp = now()
    for endpoint, partner in endpoints:
        if event.event_type in endpoint_types(endpoint, partner):
            session.add(
                WebhookMessage(
                    endpoint_id=endpoint.id,
                    seq=log_row.seq,
                    event_id=event_id,
                    event_type=event.event_type,
                    next_attempt_at=stamp,
                    created_at=stamp,
                )
            )
    return log_row


def endpoint_types(endpoint: WebhookEndpoint, partner: Partner) -> set[str]:
    """The types an endpoint receives: its own filter within the partner's grant."""
    granted = set(partner.event_types)
    return granted & set(endpoint.event_types) if endpoint.event_types else granted


# --- partners


def require_admin(principal: Principal) -> None:
    """Partner administration is the platform admin's."""
    if principal.role != Role.ADMIN:
        raise Forbidden("Only an admin manages partners")


class KafkaUnavailable(DomainError):
    """The broker refused or did not answer a change of a partner's Kafka user or ACLs."""

    status = 503
    code = "kafka_unavailable"


# --- Kafka, direct: a SCRAM user per partner, READ on its granted public topics only


def public_topics(event_types: Sequence[str]) -> list[str]:
    """The physical public topics carrying ``event_types``."""
    by_type = {cls.event_type: cls.topic for cls in pub.PUBLIC_TYPES}
    return sorted({topic_name(by_type[t]) for t in event_types if t in by_type})


def _access(deps: Deps) -> KafkaAccess:
    s = deps.settings
    return KafkaAccess(s.kafka_bootstrap_servers, s.kafka_credentials(), timeout=s.kafka_admin_timeout_seconds)


def _grant_kafka_sync(deps: Deps, partner_id: str, event_types: Sequence[str], fresh: bool) -> KafkaAccessOut:
    user = partner_user(partner_id)
    topics = public_topics(event_types)
    password = new_password()
    access = _access(deps)
    try:
        access.set_user(user, password)
        access.converge(principal_of(user), partner_acls(partner_id, topics))
    except KafkaAccessError as exc:
        if fresh:  # nothing half-created: a new user without its ACLs (or the reverse) is taken back
            with contextlib.suppress(Exception):
                access.revoke_all(principal_of(user))
            with contextlib.suppress(Exception):
                access.delete_user(user)
        raise KafkaUnavailable(
            f"Kafka did not take the partner's access ({exc}); nothing was changed, try again when the broker is back"
        ) from None
    return KafkaAccessOut(
        username=user,
        password=password,
        bootstrap_servers=deps.settings.kafka_partner_bootstrap or deps.settings.kafka_bootstrap_servers,
        topics=topics,
        group_prefix=f"{user}.",
    )


def _converge_kafka_sync(deps: Deps, partner_id: str, event_types: Sequence[str]) -> None:
    try:
        _access(deps).converge(
            principal_of(partner_user(partner_id)), partner_acls(partner_id, public_topics(event_types))
        )
    except KafkaAccessError as exc:
        raise KafkaUnavailable(f"Kafka did not take the partner's new grant ({exc}); nothing was changed") from None


def _revoke_kafka_sync(deps: Deps, partner_id: str) -> None:
    user = partner_user(partner_id)
    access = _access(deps)
    try:
        access.revoke_all(principal_of(user))
        access.delete_user(user)
    except KafkaAccessError as exc:
        raise KafkaUnavailable(
            f"Kafka did not remove the partner's access ({exc}); it is unchanged, try again when the broker is back"
        ) from None


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
        kafka = await asyncio.to_thread(_grant_kafka_sync, deps, partner.id, data.event_types, True)
        partner.kafka_user = kafka.username
    try:
        async with deps.db.transaction() as session:
            if data.api_key_id and await _by_key(session, data.api_key_id):
                raise Conflict("This API key already belongs to a partner")
            session.add(partner)
    except BaseException:
        if kafka is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(_revoke_kafka_sync, deps, partner.id)
        raise
    return partner, kafka


async def grant_kafka(deps: Deps, partner_id: str) -> KafkaAccessOut:
    """Give an active partner direct Kafka access, or a new password (the old one stops working)."""
    partner = await get_partner(deps, partner_id)
    if not partner.active:
        raise Conflict("The partner is inactive: activate it first")
    kafka = await asyncio.to_thread(
        _grant_kafka_sync, deps, partner.id, partner.event_types, partner.kafka_user is None
    )
    async with deps.db.transaction() as session:
        row = await session.get(Partner, partner_id)
        if row is None:  # deleted meanwhile: take the access back
            await asyncio.to_thread(_revoke_kafka_sync, deps, partner_id)
            raise NotFound("No such partner")
        row.kafka_user = kafka.username
        row.updated_at = now()
        session.add(row)
    return kafka


async def revoke_kafka(deps: Deps, partner_id: str) -> Partner:
    """Remove the partner's Kafka user and every ACL of it (idempotent)."""
    await get_partner(deps, partner_id)
    await asyncio.to_thread(_revoke_kafka_sync, deps, partner_id)
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
            await asyncio.to_thread(_revoke_kafka_sync, deps, partner_id)
            changes["kafka_user"] = None
        elif changes.get("event_types") and set(changes["event_types"]) != set(current.event_types):
            await asyncio.to_thread(_converge_kafka_sync, deps, partner_id, changes["event_types"])
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


# --- the log, for streams


async def read_log(deps: Deps, after: int, types: Sequence[str], limit: int) -> list[PublicEventRow]:
    """Up to ``limit`` public events after position ``after`` of the given types, in order."""
    async with deps.db.read() as session:
        rows = await session.execute(
            select(PublicEventRow)
            .where(col(PublicEventRow.seq) > after, col(PublicEventRow.event_type).in_(list(types)))
            .order_by(col(PublicEventRow.seq))
            .limit(limit)
        )
        return list(rows.scalars())
