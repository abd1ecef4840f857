# Over 500 lines: one class, the engine — its workers, claims, leases and group committer share
# state (queue, tokens, lease clock) and their ordering is the exactly-once guarantee (see delivery/__init__.py).
"""The delivery engine: workers claiming, rendering, sending and recording ledger rows (see the package's text)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from jinja2 import TemplateError

from distretto_shared.contracts import newsletter as contracts
from distretto_shared.db import Database
from distretto_shared.logging import get_logger
from distretto_shared.outbox import add_event
from newsletter import domain
from newsletter.bounces.repository import record_bounce_in
from newsletter.campaigns.models import Campaign
from newsletter.config import Settings
from newsletter.delivery.compose import CampaignMail
from newsletter.delivery.ledger import (
    _MARK_SENT,
    _SET_STATUS,
    _SIMPLE_STATUS,
    SS,
    SUB,
    C,
    Claimed,
    D,
    Outcome,
    SqliteRecorder,
)
from newsletter.delivery.mime import build_message, format_address, message_id_for
from newsletter.delivery.smtp import SendResult, SmtpConnection, SmtpServer, parse_servers
from newsletter.metrics import FAILED, RETRIED, SENT
from newsletter.templates.models import Template

log = get_logger(__name__)


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
        self._mails: dict[str, CampaignMail] = {}
        self._campaign_status: dict[str, tuple[str, float]] = {}
        self._active_tokens: set[str] = set()
        self._last_renew = time.monotonic()
        # Fewer database sessions at once than the pool holds: overflow connections are opened and
        # closed again for every use (a thread and the PRAGMAs each time on SQLite).
        self._db_slots = asyncio.Semaphore(3)
        self._connections = max(1, settings.smtp_connections_per_server) * len(self.servers)
        self._queue_full = asyncio.Event()
        self._nothing_until = 0.0
        self._claim_lock = asyncio.Lock()
        self._sqlite = SqliteRecorder.for_database(db)
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
        if self._sqlite is not None:
            self._sqlite.close()

    def wake(self) -> None:
        """New work may be waiting (a campaign started or resumed)."""
        self._nothing_until = 0.0
        self._wake.set()

    def campaign_changed(self, campaign_id: str, status: str) -> None:
        """A campaign changed status in this process: workers see it before their next message."""
        self._campaign_status[campaign_id] = (status, time.monotonic())
        self._mails.pop(campaign_id, None)
        if status == "running":
            self.wake()

    # claiming

    async def claim(self, server: SmtpServer, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` pending rows of running campaigns (and transactional mails)."""
        token = uuid.uuid4().hex
        now = datetime.now(UTC)
        pick = (
            sa.select(D.c.id)
            .select_from(D.outerjoin(C, C.c.id == D.c.campaign_id))
            .where(
                D.c.status == "pending",
                sa.or_(D.c.next_attempt_at.is_(None), D.c.next_attempt_at <= now),
                sa.or_(D.c.campaign_id.is_(None), C.c.status == "running"),
            )
            # The order of ix_delivery_status_campaign (status, campaign_id, id): the index hands the
            # rows over in order and LIMIT stops the scan. ORDER BY id alone sorted every pending row
            # on each claim (SQLite) or walked past every sent row (PostgreSQL).
            .order_by(D.c.campaign_id, D.c.id)
            .limit(limit)
        )
        if not self.db.sqlite:
            pick = pick.with_for_update(skip_locked=True, of=D)
        async with self._db_slots:
            return await self._claim(pick, token, now, server, limit)

    async def _claim(self, pick: Any, token: str, now: datetime, server: SmtpServer, limit: int) -> list[Claimed]:
        # One transaction, one connection: flip the batch to ``sending`` and read what rendering needs.
        async with self.db.transaction() as session:
            ids = (
                await session.execute(
                    D.update()
                    .where(D.c.id.in_(pick.scalar_subquery()), D.c.status == "pending")
                    .values(status="sending", claim_token=token, claimed_at=now, smtp_server=server.name)
                    .returning(D.c.id)
                )
            ).all()
            if not ids:
                return []
            self._active_tokens.add(token)
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
                    .where(D.c.id.in_([r[0] for r in ids]))  # by primary key: claim_token has no index
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
                mail = self._mails.get(campaign_id)
                if mail is not None:
                    lists = mail.lists
                else:
                    lists = (
                        await session.execute(sa.select(C.c.lists).where(C.c.id == campaign_id))
                    ).scalar_one_or_none() or []
                still = {
                    r[0]
                    for r in await session.execute(
                        sa.select(SS.c.subscriber_id).where(
                            SS.c.subscriber_id.in_([i.subscriber_id for i in items]),
                            SS.c.list_id.in_(lists),
                            SS.c.status == "confirmed",
                        )
                    )
                }
                for item in items:
                    item.eligible = item.subscriber_id in still
        return claimed

    async def release_stale(self) -> int:
        """Give back rows whose claim's lease ran out (their worker's process died).

        Never this process's own claims: their workers are alive (a claim leaves the set only
        when its batch is done), however long a slow machine kept them from committing. Those
        leases are renewed here too, so they stay fresh for other instances even when no
        outcome has been committed for a while (all connections waiting on a slow server).
        """
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=self.settings.lease_seconds)
        own = list(self._active_tokens)
        stale = sa.and_(D.c.status == "sending", D.c.claimed_at < cutoff)
        if own:
            stale = sa.and_(stale, D.c.claim_token.not_in(own))
        async with self.db.transaction() as session:
            if own:
                await session.execute(
                    D.update().where(D.c.status == "sending", D.c.claim_token.in_(own)).values(claimed_at=now)
                )
            result = await session.execute(
                D.update().where(stale).values(status="pending", claim_token=None, claimed_at=None)
            )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            log.warning("took back deliveries of a dead worker", count=count)
            self.wake()
        return count

    # the worker

    async def _campaign_running(self, campaign_id: str) -> bool:
        cached = self._campaign_status.get(campaign_id)
        now = time.monotonic()
        if cached is None or now - cached[1] > 0.5:
            if cached is not None:  # the other workers go on with the known status meanwhile
                self._campaign_status[campaign_id] = (cached[0], now)
            async with self._db_slots, self.db.read() as session:
                status = (
                    await session.execute(sa.select(C.c.status).where(C.c.id == campaign_id))
                ).scalar_one_or_none()
            cached = (status or "missing", time.monotonic())
            self._campaign_status[campaign_id] = cached
        return cached[0] == "running"

    async def _campaign_mail(self, campaign_id: str) -> CampaignMail:
        found = self._mails.get(campaign_id)
        if found is None:
            async with self.db.read() as session:
                campaign = await session.get(Campaign, campaign_id)
                if campaign is None:
                    raise LookupError(f"campaign {campaign_id} is gone")
                template = await session.get(Template, campaign.template_id)
                if template is None:
                    raise LookupError(f"template {campaign.template_id} is gone")
            found = CampaignMail(self.settings, campaign, template, from_header=self.from_header)
            self._mails[campaign_id] = found
        return found

    def compose(self, item: Claimed, mail: CampaignMail | None = None) -> tuple[str, bytes]:
        """(Message-ID, message bytes) of a claimed row (``mail``: its campaign's, for campaign rows)."""
        assert item.email is not None
        if item.kind == "campaign":
            assert mail is not None
            return mail.compose(item)
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
        last: list[asyncio.Future[None] | None] = [None]
        try:
            while not self._stopping:
                # One empty claim answers for every connection of this process until the next poll.
                quiet = self._nothing_until - time.monotonic()
                if quiet > 0:
                    await self._idle(quiet)
                    continue
                try:
                    async with self._claim_lock:
                        if self._nothing_until > time.monotonic():
                            continue
                        batch = await self.claim(server, self.settings.claim_batch)
                        if not batch:
                            self._nothing_until = time.monotonic() + self.settings.delivery_poll_interval
                except Exception as exc:
                    log.warning("claim failed; retrying", error=repr(exc))
                    await self._idle(1.0)
                    continue
                if not batch:
                    await self._idle(self.settings.delivery_poll_interval)
                    continue
                try:
                    await self._send_batch(conn, server, batch, last)
                finally:
                    self._active_tokens.discard(batch[0].token)
            if last[0] is not None:
                await last[0]
        finally:
            await conn.close()

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _send_batch(
        self, conn: SmtpConnection, server: SmtpServer, batch: list[Claimed], last: list[asyncio.Future[None] | None]
    ) -> None:
        """Send a claimed batch over one connection.

        ``last[0]`` is the commit of the previous outcome of this connection. A message's DATA
        waits for it (its MAIL and RCPT do not), so at any moment at most one message per
        connection has been accepted by the server without its ``sent`` being durable.
        Outcomes of messages that were not accepted (skipped, released, refused, failed to render)
        are handed over without waiting: losing them in a crash only sends the row round again.
        """
        sender = self.settings.from_address
        for index, item in enumerate(batch):
            if self._stopping or (item.campaign_id and not await self._campaign_running(item.campaign_id)):
                self._record([self._outcome(i, "released") for i in batch[index:]])
                return
            if not item.eligible or item.email is None:
                self._record([self._outcome(item, "skipped")])
                continue
            try:
                mail = None
                if item.kind == "campaign" and item.campaign_id:
                    mail = await self._campaign_mail(item.campaign_id)
                message_id, message = self.compose(item, mail)
            except (TemplateError, LookupError, ValueError) as exc:
                out = self._outcome(item, "failed")
                out.reply = f"render failed: {exc}"[:500]
                self._record([out])
                continue
            await server.acquire()
            result = await conn.send(sender, item.email, message, before_data=last[0])
            out = self._outcome(item, "sent" if result.ok else "failed")
            out.code, out.reply, out.message_id, out.server = result.code, result.reply, message_id, server.name
            if not result.ok:
                if result.kind == "permanent":
                    out.permanent = True
                elif item.attempts + 1 < self.settings.max_attempts:
                    out.status = "retry"
            last[0] = self._record([out])

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

    def _record(self, outcomes: list[Outcome]) -> asyncio.Future[None]:
        """Hand outcomes to the group committer; the future is done when the last one is durable."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for out in outcomes:
            self._queue.put_nowait(out)
        outcomes[-1].done = done
        if self._queue.qsize() + 1 >= self._connections:
            self._queue_full.set()
        return done

    # the group commit

    async def _committer(self) -> None:
        while True:
            batch = [await self._queue_ready()]
            while not self._queue.empty() and len(batch) < 2000:
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

    async def _queue_ready(self) -> Outcome:
        """Wait for an outcome, then linger briefly so that one commit carries many.

        The linger ends early once as many outcomes wait as there are connections (each connection
        has at most one accepted message waiting for its commit, so nothing more would come soon).
        """
        first = await self._queue.get()
        linger = self.settings.commit_linger_seconds
        if linger > 0 and self._queue.qsize() + 1 < self._connections:
            self._queue_full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue_full.wait(), timeout=linger)
        return first

    async def _commit(self, batch: list[Outcome]) -> None:
        now = datetime.now(UTC)
        sent = [o for o in batch if o.status == "sent"]
        simple = [o for o in batch if o.status in ("released", "skipped")]
        rest = [o for o in batch if o.status not in ("sent", "released", "skipped")]
        if rest:
            async with self.db.transaction() as session:
                await self._write(session, sent, simple, now)
                await self._write_failures(session, rest, now)
        elif self._sqlite is not None:  # the common case on SQLite: one thread hand-off per commit
            renew = self._renew_due()
            await self._sqlite.write(sent, simple, renew, now)
        else:  # the common case: plain Core statements on one connection, no ORM session
            async with self.db.engine.begin() as conn:
                await self._write(conn, sent, simple, now)
        for o in sent:
            SENT.labels(o.kind).inc()
        self.sent_total += len(sent)

    async def _write(self, conn: Any, sent: list[Outcome], simple: list[Outcome], now: datetime) -> None:
        if sent:
            await conn.execute(
                _MARK_SENT,
                [
                    {
                        "_id": o.delivery_id,
                        "_token": o.token,
                        "_code": o.code,
                        "_reply": o.reply,
                        "_server": o.server,
                        "_mid": o.message_id,
                        "_now": now,
                    }
                    for o in sent
                ],
            )
        if simple:
            await conn.execute(
                _SET_STATUS,
                [
                    {
                        "_id": o.delivery_id,
                        "_token": o.token,
                        "_status": _SIMPLE_STATUS[o.status],
                    }
                    for o in simple
                ],
            )
        renew = self._renew_due()
        if renew:
            await conn.execute(
                D.update().where(D.c.status == "sending", D.c.claim_token.in_(renew)).values(claimed_at=now)
            )

    def _renew_due(self) -> list[str]:
        """The claim tokens whose lease this commit renews (every quarter of the lease)."""
        if not self._active_tokens or time.monotonic() - self._last_renew <= self.settings.lease_seconds / 4:
            return []
        self._last_renew = time.monotonic()
        return list(self._active_tokens)

    async def _write_failures(self, session: Any, outcomes: list[Outcome], now: datetime) -> None:
        for o in outcomes:
            where = sa.and_(D.c.id == o.delivery_id, D.c.claim_token == o.token)
            if o.status == "retry":
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
                continue
            # failed for good
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
            if not result.rowcount:
                continue
            FAILED.labels(o.kind).inc()
            if o.campaign_id and o.subscriber_id:
                add_event(
                    session,
                    contracts.DeliveryFailed(
                        campaign_id=o.campaign_id,
                        subscriber_id=o.subscriber_id,
                        smtp_code=o.code,
                        reason=domain.redact_addresses(o.reply or "")[:300],
                    ),
                    source=self.source,
                )
            if o.subscriber_id and o.code is not None:
                kind = domain.BounceKind.HARD if o.permanent else domain.BounceKind.SOFT
                await record_bounce_in(
                    session,
                    self.settings,
                    self.source,
                    subscriber_id=o.subscriber_id,
                    kind=kind,
                    reason=o.reply or "",
                    campaign_id=o.campaign_id,
                    origin="smtp",
                )

    # direct sends (test mails)

    async def send_now(self, recipient: str, message: bytes) -> SendResult:
        """Send one message at once on a fresh connection to the first server (test sends)."""
        server = self.servers[0]
        conn = SmtpConnection(server, self.settings)
        try:
            return await conn.send(self.settings.from_address, recipient, message)
        finally:
            await conn.close()
