"""Webhook delivery workers (Standard Webhooks).

A worker leases one endpoint at a time with a compare-and-set on the endpoint row
(``UPDATE … WHERE lease_until IS NULL OR lease_until < now``: on PostgreSQL the second of two
racing updates re-checks the condition after the first commits and matches nothing; SQLite
serialises writers). Holding the lease, it sends that endpoint's pending messages one by one
in id order — so delivery is in order per endpoint, and no two workers (in this process or
any other on the same database) ever send one message at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlmodel import col, select

from distretto_shared.logging import get_logger
from distretto_shared.sealing import SealError
from partners import domain, notices
from partners.log import aware, now
from partners.models import PublicEventRow, WebhookAttempt, WebhookEndpoint, WebhookMessage
from partners.service import Deps

log = get_logger(__name__)

USER_AGENT = "Distretto-Webhooks/1"


class DeliveryWorker:
    """One delivery loop; start several (``PARTNERS_WEBHOOK_WORKERS``) or several processes."""

    def __init__(self, deps: Deps, client: httpx.AsyncClient, name: str | None = None) -> None:
        self.deps = deps
        self.client = client
        self.name = name or f"w-{uuid.uuid4().hex[:12]}"

    async def run(self) -> None:
        """Deliver until cancelled."""
        while True:
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook delivery loop failed; retrying", worker=self.name, error=repr(exc))
                worked = False
            if not worked:
                await self.deps.notifier.wait(self.deps.settings.webhook_poll_seconds)

    async def run_once(self) -> bool:
        """Lease one endpoint with due messages and deliver them; False when nothing was due."""
        await notices.send_due(self.deps, self.name)
        for endpoint_id in await self._due_endpoints():
            if await self._lease(endpoint_id):
                try:
                    await self._deliver_endpoint(endpoint_id)
                finally:
                    await self._release(endpoint_id)
                return True
        return False

    async def _due_endpoints(self) -> list[str]:
        stamp = now()
        m = WebhookMessage
        async with self.deps.db.read() as session:
            rows = await session.execute(
                sa.select(col(m.endpoint_id))
                .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(m.endpoint_id))
                .where(
                    col(m.status) == "pending",
                    col(m.next_attempt_at) <= stamp,
                    col(WebhookEndpoint.enabled).is_(True),
                    sa.or_(col(WebhookEndpoint.lease_until).is_(None), col(WebhookEndpoint.lease_until) < stamp),
                )
                .group_by(col(m.endpoint_id))
                .limit(20)
            )
            return [r[0] for r in rows]

    async def _lease(self, endpoint_id: str) -> bool:
        stamp = now()
        until = stamp + timedelta(seconds=self.deps.settings.webhook_lease_seconds)
        e = WebhookEndpoint
        async with self.deps.db.transaction() as session:
            result = await session.execute(
                sa.update(e)
                .where(
                    col(e.id) == endpoint_id,
                    col(e.enabled).is_(True),
                    sa.or_(col(e.lease_until).is_(None), col(e.lease_until) < stamp),
                )
                .values(lease_owner=self.name, lease_until=until)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _renew(self, endpoint_id: str) -> bool:
        e = WebhookEndpoint
        until = now() + timedelta(seconds=self.deps.settings.webhook_lease_seconds)
        async with self.deps.db.transaction() as session:
            result = await session.execute(
                sa.update(e).where(col(e.id) == endpoint_id, col(e.lease_owner) == self.name).values(lease_until=until)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _release(self, endpoint_id: str) -> None:
        e = WebhookEndpoint
        with contextlib.suppress(Exception):
            async with self.deps.db.transaction() as session:
                await session.execute(
                    sa.update(e)
                    .where(col(e.id) == endpoint_id, col(e.lease_owner) == self.name)
                    .values(lease_owner=None, lease_until=None)
                )

    async def _deliver_endpoint(self, endpoint_id: str) -> None:
        """Send the endpoint's messages in order until one is not due (a retry later) or none is left."""
        settings = self.deps.settings
        started = time.monotonic()
        while time.monotonic() - started < settings.webhook_lease_seconds / 2:
            async with self.deps.db.read() as session:
                endpoint = await session.get(WebhookEndpoint, endpoint_id)
                head = (
                    (
                        await session.execute(
                            select(WebhookMessage)
                            .where(WebhookMessage.endpoint_id == endpoint_id, WebhookMessage.status == "pending")
                            .order_by(col(WebhookMessage.id))
                            .limit(1)
                        )
                    )
                    .scalars()
                    .first()
                )
                if endpoint is None or head is None or not endpoint.enabled or aware(head.next_attempt_at) > now():
                    return
                event = (
                    (await session.execute(select(PublicEventRow).where(PublicEventRow.seq == head.seq)))
                    .scalars()
                    .first()
                )
            if event is None:
                await self._finish(head, endpoint, "failed", None, None, "event no longer in the log")
                continue
            status, elapsed_ms, error = await self._send(endpoint, head, event)
            ok = status is not None and 200 <= status < 300
            await self._finish(head, endpoint, "delivered" if ok else "retry", status, elapsed_ms, error)
            if not ok:
                return  # in order: the next message waits for this one's retry
            if not await self._renew(endpoint_id):
                return

    async def _send(
        self, endpoint: WebhookEndpoint, message: WebhookMessage, event: PublicEventRow
    ) -> tuple[int | None, float, str | None]:
        stamp = now()
        body = domain.envelope(
            event_id=event.event_id,
            event_type=event.event_type,
            source=event.source,
            subject=event.subject,
            time=event.time,
            payload=event.payload,
        )
        sealer = self.deps.settings.webhook_sealer()  # the secrets are stored sealed
        try:
            secrets = [sealer.open(endpoint.secret)]
            if (
                endpoint.previous_secret
                and endpoint.previous_secret_until
                and aware(endpoint.previous_secret_until) > stamp
            ):
                secrets.append(sealer.open(endpoint.previous_secret))
        except SealError as exc:
            # Nothing unsigned leaves: the attempt is logged and retried (the admin rotates the secret).
            return None, 0.0, f"not sent: the endpoint's signing secret: {exc}"[:500]
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.event_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": domain.signature_header(secrets, event.event_id, stamp, body),
        }
        began = time.perf_counter()
        if not self.deps.settings.webhook_allow_private_addresses:
            # Checked again at each send: a name that resolved to a public address when the
            # endpoint was saved may point inside the platform today.
            parts = urlsplit(endpoint.url)
            problem = await domain.internal_address_problem(parts.hostname or "", parts.port or 443)
            if problem:
                return None, (time.perf_counter() - began) * 1000, f"not sent: {problem}"[:500]
        try:
            response = await self.client.post(
                endpoint.url,
                content=body.encode(),
                headers=headers,
                timeout=self.deps.settings.webhook_timeout_seconds,
                follow_redirects=False,
            )
            return response.status_code, (time.perf_counter() - began) * 1000, None
        except httpx.HTTPError as exc:
            return None, (time.perf_counter() - began) * 1000, f"{type(exc).__name__}: {exc}"[:500]

    async def _finish(
        self,
        message: WebhookMessage,
        endpoint: WebhookEndpoint,
        outcome: str,
        status: int | None,
        elapsed_ms: float | None,
        error: str | None,
    ) -> None:
        settings = self.deps.settings
        stamp = now()
        attempt_no = message.attempts + 1
        async with self.deps.db.transaction() as session:
            session.add(
                WebhookAttempt(
                    endpoint_id=endpoint.id,
                    message_id=message.id,  # type: ignore[arg-type]
                    event_id=message.event_id,
                    attempt=attempt_no,
                    at=stamp,
                    status_code=status,
                    response_ms=round(elapsed_ms, 3) if elapsed_ms is not None else None,
                    error=error if error else (None if outcome == "delivered" else f"HTTP {status}"),
                    worker=self.name,
                )
            )
            values: dict[str, object] = {"attempts": attempt_no}
            endpoint_values: dict[str, object] = {}
            if outcome == "delivered":
                values |= {"status": "delivered", "finished_at": stamp}
                endpoint_values["failing_since"] = None
            else:
                retry_at = (
                    None
                    if outcome == "failed"
                    else domain.next_attempt(attempt_no, settings.webhook_retry_schedule, stamp)
                )
                if retry_at is None:
                    values |= {"status": "failed", "finished_at": stamp}
                else:
                    values["next_attempt_at"] = retry_at
                failing_since = aware(endpoint.failing_since) if endpoint.failing_since else stamp
                endpoint_values["failing_since"] = failing_since
                if domain.should_disable(failing_since, stamp, settings.webhook_disable_after_seconds):
                    endpoint_values |= {
                        "enabled": False,
                        "disabled_reason": f"failing since {failing_since.isoformat()} without a success",
                        "notice_due": True,
                        "notice_attempt_at": None,
                    }
                    log.warning("webhook endpoint disabled", endpoint=endpoint.id, partner=endpoint.partner_id)
            await session.execute(
                sa.update(WebhookMessage).where(col(WebhookMessage.id) == message.id).values(**values)
            )
            if endpoint_values:
                await session.execute(
                    sa.update(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint.id).values(**endpoint_values)
                )
