"""SMTP: the configured servers with their rate limit, and one persistent connection."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosmtplib

from newsletter import domain
from newsletter.config import Settings


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


_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def _envelope(address: str) -> bytes | None:
    """``<address>`` for a plain ASCII address (what aiosmtplib's quoting makes of it), else ``None``."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return None


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

    async def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        *,
        before_data: Callable[[], Awaitable[Any]] | None = None,
    ) -> SendResult:
        """MAIL, RCPT, DATA; the reply of the last step that ran.

        ``before_data`` is called and awaited between RCPT and DATA: the engine passes the durability
        of the previous message's outcome and the check of its claim's lease, so the envelope of this
        message travels while that commit runs, yet this message cannot be accepted before the
        previous one is recorded. If it raises, the transaction is reset (nothing is sent) and the
        exception goes to the caller.
        """
        try:
            client = await self._ensure()
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            return SendResult(False, None, f"connect failed: {exc}", "transient")
        try:
            mail_from, rcpt_to = _envelope(sender), _envelope(recipient)
            if client.is_ehlo_or_helo_needed or mail_from is None or rcpt_to is None:
                await client.mail(sender)
                await client.rcpt(recipient)
            else:
                # aiosmtplib's mail() and rcpt() parse and quote the address with the email package
                # each time (a tenth of a mail's CPU in the profile): a plain address is quoted here,
                # the replies checked as they check them
                reply = await client.execute_command(b"MAIL", b"FROM:" + mail_from)
                if reply.code != 250:
                    raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
                reply = await client.execute_command(b"RCPT", b"TO:" + rcpt_to)
                if reply.code not in (250, 251):
                    raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
            if before_data is not None:
                try:
                    await before_data()
                except Exception:
                    with contextlib.suppress(Exception):
                        await client.rset()
                    raise
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
