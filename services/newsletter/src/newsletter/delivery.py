"""The delivery engine: renders campaign mails and sends each exactly once, over a pool of SMTP connections.

Exactly once, also across a crash
---------------------------------
The audience of a campaign is frozen into ``delivery`` rows, one per (campaign, subscriber)
(unique), when it starts. A worker *claims* a small batch (``pending → sending`` with a random
claim token and ``claimed_at``; PostgreSQL ``FOR UPDATE SKIP LOCKED``), then for each row:
renders, sends over its own SMTP connection, and **waits until the outcome is committed**
(``sent`` with the server's reply) before it starts the next message on that connection. Rows of
a worker that died (SIGKILL) keep ``sending`` with an old ``claimed_at``; once the lease has run
out they go back to ``pending`` and are sent by someone else. A live worker renews its lease.

That leaves one unavoidable window per connection: the server answered ``250`` to DATA and the
process died before the ``sent`` commit (a group commit, a few milliseconds). That single
message would be sent again after the lease; SMTP has no two-phase commit, so no sender can
close it without the receiving server's help (the deterministic ``Message-ID`` per
(campaign, recipient) lets a downstream MTA or the mail catcher drop that repeat). A crash at
any other moment — before ``DATA`` ended, or after the commit — neither skips nor repeats anyone.
A progress pointer (listmonk) repeats or skips a whole batch instead.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import email.utils
import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from typing import Any

import aiosmtplib
import sqlalchemy as sa
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from prometheus_client import Counter, Gauge

from distretto_shared.contracts import newsletter as contracts
from distretto_shared.db import Database
from distretto_shared.logging import get_logger
from distretto_shared.outbox import add_event
from newsletter import domain
from newsletter.config import Settings
from newsletter.models import Campaign, Delivery, Subscriber, Subscription, Template

log = get_logger(__name__)

SENT = Counter("distretto_newsletter_emails_sent_total", "Mails accepted by an SMTP server", ["kind"])
FAILED = Counter("distretto_newsletter_emails_failed_total", "Mails that failed for good", ["kind"])
RETRIED = Counter("distretto_newsletter_emails_retried_total", "Transient SMTP failures put back in the queue")
BOUNCED = Counter("distretto_newsletter_bounces_total", "Bounces and complaints recorded", ["kind"])
SUPPRESSED = Counter("distretto_newsletter_subscribers_suppressed_total", "Subscribers suppressed", ["reason"])
QUEUE_DEPTH = Gauge("distretto_newsletter_queue_depth", "Ledger rows waiting or being sent")
DELIVERY_RATIO = Gauge("distretto_newsletter_delivery_ratio", "Share of finished deliveries that were accepted")
SEND_RATE = Gauge("distretto_newsletter_send_rate", "Mails accepted per second over the last scheduler tick")

D = Delivery.__table__  # type: ignore[attr-defined]
SUB = Subscriber.__table__  # type: ignore[attr-defined]

# -- rendering -------------------------------------------------------------------

_ENV_HTML = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
_ENV_TEXT = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)


def check_template(source: str, *, html: bool) -> None:
    """Raise ``ValueError`` naming the problem when ``source`` is not a valid template."""
    try:
        (_ENV_HTML if html else _ENV_TEXT).from_string(source)
    except TemplateError as exc:
        raise ValueError(f"template error: {exc}") from exc


@dataclass
class RenderedMail:
    """The parts of one mail, before MIME."""

    subject: str
    text: str
    html: str


class CampaignRenderer:
    """A campaign's compiled templates (sandboxed Jinja2; HTML autoescaped)."""

    def __init__(self, subject: str, body_html: str, body_text: str) -> None:
        self.subject_t = _ENV_TEXT.from_string(subject)
        self.html_t = _ENV_HTML.from_string(body_html)
        self.text_t = _ENV_TEXT.from_string(body_text)

    def render(self, context: dict[str, Any]) -> RenderedMail:
        """Render the three parts with the subscriber's fields (``TemplateError`` when a field is missing)."""
        return RenderedMail(
            subject=domain.clean_header_text(self.subject_t.render(context)),
            html=self.html_t.render(context),
            text=self.text_t.render(context),
        )


def footer(text: str, html: str, *, unsubscribe_url: str, preferences_url: str) -> tuple[str, str]:
    """Append the visible unsubscribe and preferences links (bulk-sender rules want them in the body)."""
    text = (
        f"{text.rstrip()}\n\n--\nUnsubscribe / Disiscriviti: {unsubscribe_url}\n"
        f"Preferences / Preferenze: {preferences_url}\n"
    )
    html = (
        f'{html}\n<hr><p style="font-size:12px;color:#666">'
        f'<a href="{_attr(unsubscribe_url)}">Unsubscribe / Disiscriviti</a> · '
        f'<a href="{_attr(preferences_url)}">Preferences / Preferenze</a></p>\n'
    )
    return text, html


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


# -- MIME ----------------------------------------------------------------------

_subject_cache: dict[str, str] = {}


def _encode_header_text(value: str, name: str) -> str:
    value = domain.clean_header_text(value, limit=500)
    if value.isascii() and len(value) < 900:
        return value
    cached = _subject_cache.get(value)
    if cached is None:
        cached = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
        if len(_subject_cache) < 10_000:
            _subject_cache[value] = cached
    return cached


def format_address(name: str, addr: str) -> str:
    """``Name <addr>`` with the name quoted or RFC 2047-encoded as needed, never spanning lines."""
    return email.utils.formataddr((domain.clean_header_text(name, limit=200), addr), charset="utf-8")


def _qp(text: str) -> bytes:
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    if not data.endswith(b"\n"):
        data += b"\n"
    return binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")


def message_id_for(campaign_id: str | None, key: str, domain_name: str) -> str:
    """A deterministic Message-ID: the same (campaign, recipient) always gets the same one."""
    digest = hashlib.sha256(f"{campaign_id}:{key}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain_name}>"


def build_message(
    *,
    from_header: str,
    to_name: str,
    to_addr: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    extra_headers: Sequence[tuple[str, str]] = (),
    date: str | None = None,
) -> bytes:
    """An RFC 5322 message, multipart/alternative (text then HTML), quoted-printable UTF-8, CRLF.

    Written directly rather than through ``email.message.EmailMessage`` (which costs ~2 ms a
    message); the tests parse every message back with the standard library and check it has no
    defects. Every dynamic header value is stripped of CR/LF and control characters first.
    """
    # "=_" never occurs in quoted-printable output ("=" is always encoded), so it cannot clash.
    boundary = "=_d" + message_id.strip("<>").split("@", 1)[0][:24]
    headers = [
        f"From: {from_header}",
        f"To: {format_address(to_name, to_addr)}",
        f"Subject: {_encode_header_text(subject, 'Subject')}",
        f"Date: {date or email.utils.formatdate(usegmt=True)}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
    ]
    headers += [f"{name}: {domain.clean_header_text(value, limit=1900)}" for name, value in extra_headers]
    headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    head = ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8")
    b = boundary.encode()
    part_head = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    return b"".join(
        [
            head,
            b"--" + b + b"\r\n",
            part_head % b"plain",
            _qp(text),
            b"--" + b + b"\r\n",
            part_head % b"html",
            _qp(html),
            b"--" + b + b"--\r\n",
        ]
    )


# -- SMTP ----------------------------------------------------------------------


@dataclass
class SmtpServer:
    """One SMTP server: its address, its rate limit."""

    host: str
    port: int
    bucket: domain.TokenBucket

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    async def acquire(self) -> None:
        """Wait for a token of this server's bucket."""
        wait = self.bucket.take(time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)


def parse_servers(settings: Settings) -> list[SmtpServer]:
    """The configured SMTP servers (``host:port,host:port``)."""
    servers = []
    for item in settings.smtp_servers.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        servers.append(
            SmtpServer(
                host=host or "127.0.0.1",
                port=int(port or 25),
                bucket=domain.TokenBucket(settings.smtp_rate_per_second, settings.smtp_burst, time.monotonic()),
            )
        )
    if not servers:
        raise ValueError("NEWSLETTER_SMTP_SERVERS names no server")
    return servers


@dataclass
class SendResult:
    """What the server said about one message."""

    ok: bool
    code: int | None
    reply: str
    kind: str = "ok"
    """ok, permanent (5xx), transient (4xx or no answer)"""


class SmtpConnection:
    """One persistent SMTP connection (reconnects when it has dropped)."""

    def __init__(self, server: SmtpServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self.client: aiosmtplib.SMTP | None = None

    async def _ensure(self) -> aiosmtplib.SMTP:
        if self.client is None or not self.client.is_connected:
            client = aiosmtplib.SMTP(
                hostname=self.server.host,
                port=self.server.port,
                timeout=self.settings.smtp_timeout,
                start_tls=self.settings.smtp_starttls,
                use_tls=False,
            )
            await client.connect()
            if self.settings.smtp_username:
                await client.login(self.settings.smtp_username, self.settings.smtp_password)
            self.client = client
        return self.client

    async def send(self, sender: str, recipient: str, message: bytes) -> SendResult:
        """MAIL, RCPT, DATA; the reply of the last step that ran."""
        try:
            client = await self._ensure()
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            return SendResult(False, None, f"connect failed: {exc}", "transient")
        try:
            await client.mail(sender)
            await client.rcpt(recipient)
            response = await client.data(message)
            return SendResult(True, response.code, f"{response.code} {response.message}"[:500])
        except aiosmtplib.SMTPResponseException as exc:
            with contextlib.suppress(Exception):
                await client.rset()
            kind = domain.smtp_failure_kind(exc.code)
            return SendResult(False, exc.code, f"{exc.code} {exc.message}"[:500], kind)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            return SendResult(False, None, f"connection lost: {exc!r}"[:500], "transient")

    async def close(self) -> None:
        """Quit politely if possible."""
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                if client.is_connected:
                    await asyncio.wait_for(client.quit(), timeout=2)
            with contextlib.suppress(Exception):
                client.close()


# -- the engine ------------------------------------------------------------------


@dataclass
class Outcome:
    """A send's result, waiting for the group commit."""

    delivery_id: int
    token: str
    kind: str
    campaign_id: str | None
    subscriber_id: str | None
    status: str
    """sent, failed, retry, skipped, released"""
    attempts: int = 0
    code: int | None = None
    reply: str | None = None
    message_id: str | None = None
    server: str | None = None
    permanent: bool = False
    done: asyncio.Future[None] | None = field(default=None, repr=False)


@dataclass
class Claimed:
    """A claimed ledger row with what rendering it needs."""

    id: int
    token: str
    kind: str
    campaign_id: str | None
    subscriber_id: str | None
    email: str | None
    payload: dict[str, Any] | None
    attempts: int
    name: str = ""
    language: str = "it"
    attributes: dict[str, Any] = field(default_factory=dict)
    eligible: bool = True


class DeliveryEngine:
    """Workers (one per SMTP connection) claiming, rendering, sending and recording ledger rows."""

    def __init__(self, db: Database, settings: Settings, *, source: str) -> None:
        self.db = db
        self.settings = settings
        self.source = source
        self.servers = parse_servers(settings)
        self._tasks: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[Outcome] = asyncio.Queue()
        self._stopping = False
        self._wake = asyncio.Event()
        self._renderers: dict[str, tuple[CampaignRenderer, Campaign]] = {}
        self._campaign_status: dict[str, tuple[str, float]] = {}
        self._active_tokens: set[str] = set()
        self._last_renew = time.monotonic()
        # Fewer database sessions at once than the pool holds: overflow connections are opened and
        # closed again for every use (a thread and the PRAGMAs each time on SQLite).
        self._db_slots = asyncio.Semaphore(3)
        self.sent_total = 0
        self.from_header = format_address(settings.from_name, settings.from_address)

    # lifecycle

    async def start(self) -> None:
        """Start one worker per SMTP connection and the committer."""
        self._stopping = False
        self._tasks.append(asyncio.create_task(self._committer(), name="newsletter-committer"))
        for server in self.servers:
            for i in range(max(1, self.settings.smtp_connections_per_server)):
                self._tasks.append(asyncio.create_task(self._worker(server), name=f"newsletter-smtp-{server.name}-{i}"))

    async def stop(self) -> None:
        """Let every worker finish its current message, give back unsent claims, then stop."""
        self._stopping = True
        self._wake.set()
        workers = self._tasks[1:]
        if workers:
            _done, pending = await asyncio.wait(workers, timeout=self.settings.smtp_timeout + 5)
            for task in pending:
                task.cancel()
        # the committer drains what the workers reported
        deadline = time.monotonic() + 10
        while not self._queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()

    def wake(self) -> None:
        """New work may be waiting (a campaign started or resumed)."""
        self._wake.set()

    def campaign_changed(self, campaign_id: str, status: str) -> None:
        """A campaign changed status in this process: workers see it before their next message."""
        self._campaign_status[campaign_id] = (status, time.monotonic())
        self._renderers.pop(campaign_id, None)
        if status == "running":
            self.wake()

    # claiming

    async def claim(self, server: SmtpServer, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` pending rows of running campaigns (and transactional mails)."""
        token = uuid.uuid4().hex
        now = datetime.now(UTC)
        C = Campaign.__table__  # type: ignore[attr-defined]
        pick = (
            sa.select(D.c.id)
            .select_from(D.outerjoin(C, C.c.id == D.c.campaign_id))
            .where(
                D.c.status == "pending",
                sa.or_(D.c.next_attempt_at.is_(None), D.c.next_attempt_at <= now),
                sa.or_(D.c.campaign_id.is_(None), C.c.status == "running"),
            )
            .order_by(D.c.id)
            .limit(limit)
        )
        if not self.db.sqlite:
            pick = pick.with_for_update(skip_locked=True, of=D)
        async with self._db_slots:
            return await self._claim(pick, token, now, server, limit)

    async def _claim(self, pick: Any, token: str, now: datetime, server: SmtpServer, limit: int) -> list[Claimed]:
        async with self.db.transaction() as session:
            ids = [
                r[0]
                for r in await session.execute(
                    D.update()
                    .where(D.c.id.in_(pick.scalar_subquery()), D.c.status == "pending")
                    .values(status="sending", claim_token=token, claimed_at=now, smtp_server=server.name)
                    .returning(D.c.id)
                )
            ]
        if not ids:
            return []
        self._active_tokens.add(token)
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    sa.select(
                        D.c.id,
                        D.c.kind,
                        D.c.campaign_id,
                        D.c.subscriber_id,
                        D.c.email,
                        D.c.payload,
                        D.c.attempts,
                        SUB.c.email.label("sub_email"),
                        SUB.c.name,
                        SUB.c.language,
                        SUB.c.attributes,
                        SUB.c.suppressed,
                    )
                    .select_from(D.outerjoin(SUB, SUB.c.id == D.c.subscriber_id))
                    .where(D.c.claim_token == token)
                    .order_by(D.c.id)
                )
            ).all()
            claimed = []
            by_campaign: dict[str, list[Claimed]] = {}
            for r in rows:
                item = Claimed(
                    id=r.id,
                    token=token,
                    kind=r.kind,
                    campaign_id=r.campaign_id,
                    subscriber_id=r.subscriber_id,
                    email=r.email or r.sub_email,
                    payload=r.payload,
                    attempts=r.attempts,
                    name=r.name or "",
                    language=r.language or "it",
                    attributes=r.attributes or {},
                )
                if r.kind == "campaign":
                    item.eligible = r.sub_email is not None and not r.suppressed
                    if item.eligible and r.campaign_id:
                        by_campaign.setdefault(r.campaign_id, []).append(item)
                claimed.append(item)
            # Honour an unsubscribe that happened after the campaign started.
            for campaign_id, items in by_campaign.items():
                campaign = await session.get(Campaign, campaign_id)
                lists = campaign.lists if campaign else []
                still = {
                    r[0]
                    for r in await session.execute(
                        sa.select(Subscription.subscriber_id).where(  # type: ignore[call-overload]
                            Subscription.subscriber_id.in_([i.subscriber_id for i in items]),  # type: ignore[union-attr,attr-defined]
                            Subscription.list_id.in_(lists),  # type: ignore[attr-defined]
                            Subscription.status == "confirmed",
                        )
                    )
                }
                for item in items:
                    item.eligible = item.subscriber_id in still
        return claimed

    async def release_stale(self) -> int:
        """Give back rows whose claim's lease ran out (their worker's process died)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.lease_seconds)
        async with self.db.transaction() as session:
            result = await session.execute(
                D.update()
                .where(D.c.status == "sending", D.c.claimed_at < cutoff)
                .values(status="pending", claim_token=None, claimed_at=None)
            )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            log.warning("took back deliveries of a dead worker", count=count)
            self.wake()
        return count

    # the worker

    async def _campaign_running(self, campaign_id: str) -> bool:
        cached = self._campaign_status.get(campaign_id)
        if cached is None or time.monotonic() - cached[1] > 0.5:
            async with self.db.read() as session:
                status = (
                    await session.execute(sa.select(Campaign.status).where(Campaign.id == campaign_id))  # type: ignore[call-overload]
                ).scalar_one_or_none()
            cached = (status or "missing", time.monotonic())
            self._campaign_status[campaign_id] = cached
        return cached[0] == "running"

    async def _renderer(self, campaign_id: str) -> tuple[CampaignRenderer, Campaign]:
        found = self._renderers.get(campaign_id)
        if found is None:
            async with self.db.read() as session:
                campaign = await session.get(Campaign, campaign_id)
                if campaign is None:
                    raise LookupError(f"campaign {campaign_id} is gone")
                template = await session.get(Template, campaign.template_id)
                if template is None:
                    raise LookupError(f"template {campaign.template_id} is gone")
            found = (CampaignRenderer(campaign.subject, template.body_html, template.body_text), campaign)
            self._renderers[campaign_id] = found
        return found

    def compose(self, item: Claimed, renderer: CampaignRenderer | None, campaign: Campaign | None) -> tuple[str, bytes]:
        """(Message-ID, message bytes) of a claimed row."""
        assert item.email is not None
        if item.kind == "campaign":
            assert renderer is not None and campaign is not None and item.subscriber_id is not None
            from newsletter import service  # links are the service's business

            links = service.links_for(self.settings, item.subscriber_id, campaign.id)
            context = {
                "subscriber": {
                    "name": item.name,
                    "email": item.email,
                    "language": item.language,
                    "attributes": item.attributes,
                },
                "campaign": {"id": campaign.id, "name": campaign.name, "data": campaign.data},
                **links,
            }
            mail = renderer.render(context)
            text, html = footer(
                mail.text, mail.html, unsubscribe_url=links["unsubscribe_url"], preferences_url=links["preferences_url"]
            )
            message_id = message_id_for(campaign.id, item.subscriber_id, self.settings.mail_domain)
            headers = service.list_headers(self.settings, links, campaign)
            return message_id, build_message(
                from_header=self.from_header,
                to_name=item.name,
                to_addr=item.email,
                subject=mail.subject,
                text=text,
                html=html,
                message_id=message_id,
                extra_headers=headers,
            )
        payload = item.payload or {}
        message_id = message_id_for(None, f"{item.kind}:{item.id}", self.settings.mail_domain)
        return message_id, build_message(
            from_header=self.from_header,
            to_name=str(payload.get("to_name", "")),
            to_addr=item.email,
            subject=str(payload.get("subject", "")),
            text=str(payload.get("text", "")),
            html=str(payload.get("html", "")),
            message_id=message_id,
            extra_headers=[tuple(h) for h in payload.get("headers", [])],  # type: ignore[misc]
        )

    async def _worker(self, server: SmtpServer) -> None:
        conn = SmtpConnection(server, self.settings)
        try:
            while not self._stopping:
                try:
                    batch = await self.claim(server, self.settings.claim_batch)
                except Exception as exc:
                    log.warning("claim failed; retrying", error=repr(exc))
                    await self._idle(1.0)
                    continue
                if not batch:
                    await self._idle(self.settings.delivery_poll_interval)
                    continue
                try:
                    await self._send_batch(conn, server, batch)
                finally:
                    self._active_tokens.discard(batch[0].token)
        finally:
            await conn.close()

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _send_batch(self, conn: SmtpConnection, server: SmtpServer, batch: list[Claimed]) -> None:
        for index, item in enumerate(batch):
            if self._stopping or (item.campaign_id and not await self._campaign_running(item.campaign_id)):
                await self._record([self._outcome(i, "released") for i in batch[index:]])
                return
            if not item.eligible or item.email is None:
                await self._record([self._outcome(item, "skipped")])
                continue
            try:
                renderer, campaign = (None, None)
                if item.kind == "campaign" and item.campaign_id:
                    renderer, campaign = await self._renderer(item.campaign_id)
                message_id, message = self.compose(item, renderer, campaign)
            except (TemplateError, LookupError, ValueError) as exc:
                out = self._outcome(item, "failed")
                out.reply = f"render failed: {exc}"[:500]
                await self._record([out])
                continue
            await server.acquire()
            result = await conn.send(self.settings.from_address, item.email, message)
            out = self._outcome(item, "sent" if result.ok else "failed")
            out.code, out.reply, out.message_id, out.server = result.code, result.reply, message_id, server.name
            if not result.ok:
                if result.kind == "permanent":
                    out.permanent = True
                elif item.attempts + 1 < self.settings.max_attempts:
                    out.status = "retry"
            await self._record([out])

    def _outcome(self, item: Claimed, status: str) -> Outcome:
        return Outcome(
            delivery_id=item.id,
            token=item.token,
            kind=item.kind,
            campaign_id=item.campaign_id,
            subscriber_id=item.subscriber_id,
            status=status,
            attempts=item.attempts,
        )

    async def _record(self, outcomes: list[Outcome]) -> None:
        """Hand outcomes to the committer and wait until they are durable."""
        loop = asyncio.get_running_loop()
        futures = []
        for out in outcomes:
            out.done = loop.create_future()
            futures.append(out.done)
            self._queue.put_nowait(out)
        await asyncio.gather(*futures)

    # the group commit

    async def _committer(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while not self._queue.empty() and len(batch) < 1000:
                batch.append(self._queue.get_nowait())
            delay = 0.1
            while True:
                try:
                    async with self._db_slots:
                        await self._commit(batch)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # The mails were sent: never drop their outcome, retry until the database is back.
                    log.warning("recording outcomes failed; retrying", error=repr(exc), count=len(batch))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            for out in batch:
                if out.done is not None and not out.done.done():
                    out.done.set_result(None)

    async def _commit(self, batch: list[Outcome]) -> None:
        from newsletter import service

        now = datetime.now(UTC)
        sent = [o for o in batch if o.status == "sent"]
        async with self.db.transaction() as session:
            if sent:
                await session.execute(
                    D.update()
                    .where(D.c.id == sa.bindparam("_id"), D.c.claim_token == sa.bindparam("_token"))
                    .values(
                        status="sent",
                        smtp_code=sa.bindparam("_code"),
                        smtp_reply=sa.bindparam("_reply"),
                        smtp_server=sa.bindparam("_server"),
                        message_id=sa.bindparam("_mid"),
                        sent_at=now,
                        attempts=D.c.attempts + 1,
                    ),
                    [
                        {
                            "_id": o.delivery_id,
                            "_token": o.token,
                            "_code": o.code,
                            "_reply": o.reply,
                            "_server": o.server,
                            "_mid": o.message_id,
                        }
                        for o in sent
                    ],
                )
            for o in batch:
                if o.status == "sent":
                    continue
                where = sa.and_(D.c.id == o.delivery_id, D.c.claim_token == o.token)
                if o.status == "released":
                    await session.execute(D.update().where(where).values(status="pending", claim_token=None))
                elif o.status == "skipped":
                    await session.execute(D.update().where(where).values(status="skipped", claim_token=None))
                elif o.status == "retry":
                    backoff = self.settings.retry_backoff_seconds * (o.attempts + 1)
                    await session.execute(
                        D.update()
                        .where(where)
                        .values(
                            status="pending",
                            claim_token=None,
                            attempts=D.c.attempts + 1,
                            next_attempt_at=now + timedelta(seconds=backoff),
                            smtp_code=o.code,
                            smtp_reply=o.reply,
                        )
                    )
                    RETRIED.inc()
                else:  # failed for good
                    result = await session.execute(
                        D.update()
                        .where(where)
                        .values(
                            status="failed",
                            claim_token=None,
                            attempts=D.c.attempts + 1,
                            smtp_code=o.code,
                            smtp_reply=o.reply,
                            smtp_server=o.server,
                        )
                    )
                    if result.rowcount:  # type: ignore[attr-defined]
                        FAILED.labels(o.kind).inc()
                        if o.campaign_id and o.subscriber_id:
                            add_event(
                                session,
                                contracts.DeliveryFailed(
                                    campaign_id=o.campaign_id,
                                    subscriber_id=o.subscriber_id,
                                    smtp_code=o.code,
                                    reason=(o.reply or "")[:300],
                                ),
                                source=self.source,
                            )
                        if o.subscriber_id and o.code is not None:
                            kind = domain.BounceKind.HARD if o.permanent else domain.BounceKind.SOFT
                            await service.record_bounce_in(
                                session,
                                self.settings,
                                self.source,
                                subscriber_id=o.subscriber_id,
                                kind=kind,
                                reason=o.reply or "",
                                campaign_id=o.campaign_id,
                                origin="smtp",
                            )
            if self._active_tokens and time.monotonic() - self._last_renew > self.settings.lease_seconds / 4:
                await session.execute(
                    D.update()
                    .where(D.c.status == "sending", D.c.claim_token.in_(list(self._active_tokens)))
                    .values(claimed_at=now)
                )
                self._last_renew = time.monotonic()
        for o in sent:
            SENT.labels(o.kind).inc()
        self.sent_total += len(sent)

    # direct sends (test mails)

    async def send_now(self, recipient: str, message: bytes) -> SendResult:
        """Send one message at once on a fresh connection to the first server (test sends)."""
        server = self.servers[0]
        conn = SmtpConnection(server, self.settings)
        try:
            return await conn.send(self.settings.from_address, recipient, message)
        finally:
            await conn.close()
