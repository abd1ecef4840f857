"""Telling a partner that one of its webhook endpoints was disabled after a day of failures.

The notice is an e-mail to the partner's ``contact_email`` through the platform's SMTP relay
(``PARTNERS_NOTICE_SMTP_*``). The endpoint row carries ``notice_due``: the transaction that
disables the endpoint sets it, a worker claims it with a compare-and-set (so two workers never
send the same notice), sends, and records ``notified_at``; a relay that refuses or is down leaves
the notice due again, tried after ``notice_retry_seconds``.
"""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib
import sqlalchemy as sa
from sqlmodel import col, select

from distretto_shared.conventions import canonical_id
from distretto_shared.logging import get_logger
from partners import metrics
from partners.config import Settings
from partners.log import now
from partners.models import Partner, WebhookAttempt, WebhookEndpoint
from partners.service import Deps

log = get_logger(__name__)


def compose(settings: Settings, partner: Partner, endpoint: WebhookEndpoint, last_error: str | None) -> EmailMessage:
    """The notice (Italian, then English): which endpoint, since when, the last error, what to do."""
    since = endpoint.failing_since.isoformat() if endpoint.failing_since else "?"
    error = last_error or "-"
    msg = EmailMessage()
    msg["From"] = settings.notice_from
    msg["To"] = partner.contact_email or ""
    msg["Subject"] = "Distretto: endpoint webhook disattivato / webhook endpoint disabled"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.notice_from.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"""Gentile {partner.name},

l'endpoint webhook {endpoint.url} (id {canonical_id(endpoint.id)}) non ha accettato consegne dal {since}
ed è stato disattivato. Ultimo errore: {error}
Gli eventi restano in coda: quando il ricevitore funziona di nuovo, chiedete all'amministratore
della piattaforma di riattivarlo e la coda riparte dal primo evento non consegnato, in ordine.

---

Dear {partner.name},

the webhook endpoint {endpoint.url} (id {canonical_id(endpoint.id)}) has not accepted a delivery since {since}
and was disabled. Last error: {error}
Events keep queuing: once your receiver works again, ask the platform's admin to enable it and
the queue resumes from the first undelivered event, in order.
"""
    )
    return msg


async def send(settings: Settings, message: EmailMessage) -> None:
    """Hand one message to the relay (raises on refusal or a relay that cannot be reached)."""
    host, _, port = settings.notice_smtp_server.rpartition(":")
    await aiosmtplib.send(
        message,
        hostname=host or settings.notice_smtp_server,
        port=int(port) if port.isdigit() else 25,
        username=settings.notice_smtp_username or None,
        password=settings.notice_smtp_password or None,
        start_tls=settings.notice_smtp_starttls,
        timeout=settings.notice_smtp_timeout,
    )


async def send_due(deps: Deps, worker: str) -> int:
    """Send the notices that are due; returns how many went out."""
    settings = deps.settings
    stamp = now()
    retry_before = stamp - timedelta(seconds=settings.notice_retry_seconds)
    e = WebhookEndpoint
    async with deps.db.read() as session:
        due = list(
            (
                await session.execute(
                    select(e.id).where(
                        col(e.notice_due).is_(True),
                        sa.or_(col(e.notice_attempt_at).is_(None), col(e.notice_attempt_at) < retry_before),
                    )
                )
            ).scalars()
        )
    sent = 0
    for endpoint_id in due:
        async with deps.db.transaction() as session:  # claim: the notice stays due, the attempt is stamped
            claimed = await session.execute(
                sa.update(e)
                .where(
                    col(e.id) == endpoint_id,
                    col(e.notice_due).is_(True),
                    sa.or_(col(e.notice_attempt_at).is_(None), col(e.notice_attempt_at) < retry_before),
                )
                .values(notice_attempt_at=stamp)
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                continue
        async with deps.db.read() as session:
            endpoint = await session.get(WebhookEndpoint, endpoint_id)
            partner = await session.get(Partner, endpoint.partner_id) if endpoint else None
            last_error = (
                await session.execute(
                    select(WebhookAttempt.error)
                    .where(WebhookAttempt.endpoint_id == endpoint_id)
                    .order_by(col(WebhookAttempt.id).desc())
                    .limit(1)
                )
            ).scalar()
        if endpoint is None or partner is None:
            continue
        if not partner.contact_email:
            await _record(deps, endpoint_id, due=False, error="the partner has no contact address")
            log.warning("endpoint disabled; the partner has no contact address", endpoint=endpoint_id)
            continue
        try:
            await send(settings, compose(settings, partner, endpoint, last_error))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await _record(deps, endpoint_id, due=True, error=f"{type(exc).__name__}: {exc}"[:500])
            log.warning("notice not sent; will retry", endpoint=endpoint_id, worker=worker, error=repr(exc))
            continue
        await _record(deps, endpoint_id, due=False, error=None, notified=True)
        log.info("partner told: endpoint disabled", endpoint=endpoint_id, partner=partner.id)
        metrics.NOTICES_SENT.inc()
        sent += 1
    return sent


async def _record(deps: Deps, endpoint_id: str, *, due: bool, error: str | None, notified: bool = False) -> None:
    values: dict[str, object] = {"notice_due": due, "notice_error": error}
    if notified:
        values["notified_at"] = now()
    async with deps.db.transaction() as session:
        await session.execute(sa.update(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id).values(**values))
