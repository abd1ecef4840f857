# Hand-written on top of aiosmtplib: the commands of every message and the reading of their replies
# (``_Wire``). aiosmtplib still opens each connection (greeting, EHLO, STARTTLS, AUTH) and hands
# its transport over. Why: py-spy (``--gil``) of the engine sending 20,000 mails on SQLite through
# aiosmtplib's command methods put aiosmtplib's DATA (two regular expressions over every message:
# line ends, then dot-stuffing) at 29 % of the workers' Python time, its reply parser at 16 % of
# the process's, and a timer per command (``asyncio.wait_for``) at 7 %. For a 5,022-byte campaign
# mail, aiosmtplib's DATA preparation measured 154-202 µs against 21-39 µs here (loaded machine). In
# ``bench/newsletter/run.py``, run in turns with the code before in the same window (load average
# 5-9, three rounds each), the engine's CPU per mail went from 0.39-0.50 to 0.25-0.36 ms on SQLite
# and from 0.35-0.65 to 0.22-0.42 ms on PostgreSQL. Tested against the real aiosmtpd server in
# tests/test_smtp.py (refusals, multi-line and split replies, a dropped connection, a silent
# server, dot-stuffing byte for byte, uvloop).
"""SMTP: the configured servers with their rate limit, and one persistent connection."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX, normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

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


def _address(address: str) -> bytes:
    """The envelope form of an address: :func:`_envelope`'s, else aiosmtplib's quoting of it (``ValueError``
    for what cannot go into a command line, as aiosmtplib refuses it)."""
    plain = _envelope(address)
    if plain is not None:
        return plain
    quoted = quote_address(address).encode("ascii")
    if COMMAND_INJECTION_REGEX.search(quoted):
        raise ValueError("Command arg contains a prohibited control character")
    return quoted


def dot_stuffed(message: bytes, *, crlf: bool = False) -> bytes:
    """The message as DATA carries it: CRLF line ends, a ``.`` starting a line doubled, ``.`` CRLF to end.

    What aiosmtplib's DATA does with two regular expressions over the whole message (more CPU than
    the rest of a send), here with byte counts and ``replace``; ``crlf``: every line end is CRLF
    already and the message ends with one (the MIME writer's output), so nothing is counted.
    """
    if not crlf:
        ends = message.count(b"\r\n")
        if message.count(b"\n") != ends or message.count(b"\r") != ends:
            message = normalize_message_line_endings(message)
        elif not message.endswith(b"\r\n"):
            message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    if b"\n." in message:
        message = message.replace(b"\n.", b"\n..")
    return message + b".\r\n"


_MAX_REPLY = 65536


def _reply(raw: bytes) -> SMTPResponse:
    """A complete reply (one or more CRLF-ended lines) as aiosmtplib reads it: the last line's code,
    the lines' texts joined by a line feed."""
    lines = raw.split(b"\n")[:-1]
    try:
        code = int(lines[-1][:3])
    except ValueError:
        line = lines[-1].decode("utf-8", errors="ignore")
        raise aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {line}") from None
    text = b"\n".join([line[4:].strip(b" \t\r\n") for line in lines])
    return SMTPResponse(code, text.decode("utf-8", "surrogateescape"))


def _reply_end(data: bytes) -> int:
    """Where the first complete reply of ``data`` ends (after the first line with no ``-`` after its
    code), or -1."""
    start = 0
    while True:
        end = data.find(b"\n", start) + 1
        if not end:
            return -1
        if data[start + 3 : start + 4] != b"-":
            return end
        start = end


class _Wire(asyncio.Protocol):
    """The hot path's end of a connection that aiosmtplib opened (greeting, EHLO, STARTTLS, AUTH).

    One command at a time: a command line is written and the next complete reply (its last line has
    a space, not a ``-``, after the code) resolves that command's future. Data that answers no
    command means the conversation is out of step: the connection is dropped (the next send opens
    a new one).

    The timeout: a watchdog looks four times per ``timeout`` whether the command waiting for its
    reply was written more than ``timeout`` ago, and drops the connection if so (``TimeoutError``
    to that command). A command only notes when it was written: a timer per command (aiosmtplib's,
    or ``asyncio.timeout``) cost as much CPU as reading the replies.
    """

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self.transport = transport
        self.lost = False
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self._waiter: asyncio.Future[bytes] | None = None
        self._timeout = timeout
        self._written = 0.0
        self._watch = self._loop.call_later(timeout / 4, self._check) if timeout > 0 else None

    async def command(self, line: bytes) -> SMTPResponse:
        """Write one command line (or a message ended by ``.``); its reply."""
        if self.lost:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        waiter = self._waiter = self._loop.create_future()
        self._written = self._loop.time()
        self.transport.write(line)
        return _reply(await waiter)

    def _check(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self._loop.time() - self._written > self._timeout:
            self._drop(TimeoutError(f"no reply within {self._timeout:g} s"))
        elif not self.lost:
            self._watch = self._loop.call_later(self._timeout / 4, self._check)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        end = _reply_end(data)
        if end < 0:
            if len(data) > _MAX_REPLY:
                self._drop(aiosmtplib.SMTPResponseException(-1, "Response too long"))
            else:
                self._buffer = data
            return
        self._buffer = b""
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            self._drop(aiosmtplib.SMTPResponseException(-1, "a reply to no command"))
            return
        waiter.set_result(data[:end])
        if end < len(data):  # more than one reply to one command: answered, then dropped
            self._drop(aiosmtplib.SMTPResponseException(-1, "a reply to no command"))

    def _drop(self, exc: Exception) -> None:
        self.lost = True
        if self._watch is not None:
            self._watch.cancel()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.transport.close()

    def eof_received(self) -> bool:
        self._drop(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        disconnected = aiosmtplib.SMTPServerDisconnected("Connection lost")
        disconnected.__cause__ = exc
        self._drop(disconnected)


@dataclass
class SendResult:
    """What the server said about one message."""

    ok: bool
    code: int | None
    reply: str
    kind: str = "ok"
    """ok, permanent (5xx), transient (4xx or no answer)"""


class SmtpConnection:
    """One persistent SMTP connection (reconnects when it has dropped).

    aiosmtplib opens it (greeting, EHLO, STARTTLS, AUTH); then the connection is handed to a
    :class:`_Wire`, which writes the commands of every message and reads their replies.
    """

    def __init__(self, server: SmtpServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self.wire: _Wire | None = None

    async def _ensure(self) -> _Wire:
        wire = self.wire
        if wire is None or wire.lost:
            client = aiosmtplib.SMTP(
                hostname=self.server.host,
                port=self.server.port,
                timeout=self.settings.smtp_timeout,
                start_tls=self.settings.smtp_starttls,
                use_tls=False,
            )
            await client.connect()
            try:
                if self.settings.smtp_username:
                    await client.login(self.settings.smtp_username, self.settings.smtp_password)
                if client.is_ehlo_or_helo_needed:
                    try:
                        await client.ehlo()
                    except aiosmtplib.SMTPHeloError:
                        await client.helo()
                transport = cast(asyncio.Transport | None, client.transport)  # uvloop's is not a subclass
                if transport is None or transport.is_closing():
                    raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            except BaseException:
                client.close()
                raise
            wire = self.wire = _Wire(transport, self.settings.smtp_timeout)
            transport.set_protocol(wire)
        return wire

    async def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        *,
        before_data: Callable[[], Awaitable[Any]] | None = None,
        crlf: bool = False,
    ) -> SendResult:
        """MAIL, RCPT, DATA; the reply of the last step that ran.

        ``before_data`` is called and awaited between RCPT and DATA: the engine passes the durability
        of the previous message's outcome and the check of its claim's lease, so the envelope of this
        message travels while that commit runs, yet this message cannot be accepted before the
        previous one is recorded. If it raises, the transaction is reset (nothing is sent) and the
        exception goes to the caller. ``crlf``: the message's line ends are all CRLF, the last line's
        too (what :mod:`~newsletter.delivery.mime` writes), so DATA does not check them. An address
        that cannot go into a command is a permanent failure of that message.
        """
        try:
            mail_from, rcpt_to = _address(sender), _address(recipient)
        except ValueError as exc:
            return SendResult(False, None, f"address refused: {exc}"[:500], "permanent")
        try:
            wire = await self._ensure()
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            return SendResult(False, None, f"connect failed: {exc}", "transient")
        try:
            reply = await wire.command(b"MAIL FROM:" + mail_from + b"\r\n")
            if reply.code != 250:
                raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
            reply = await wire.command(b"RCPT TO:" + rcpt_to + b"\r\n")
            if reply.code not in (250, 251):
                raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
            if before_data is not None:
                try:
                    await before_data()
                except Exception:
                    await self._reset(wire)
                    raise
            reply = await wire.command(b"DATA\r\n")
            if reply.code != 354:
                raise aiosmtplib.SMTPDataError(reply.code, reply.message)
            reply = await wire.command(dot_stuffed(message, crlf=crlf))
            if reply.code != 250:
                raise aiosmtplib.SMTPDataError(reply.code, reply.message)
            return SendResult(True, reply.code, f"{reply.code} {reply.message}"[:500])
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code < 0:  # not a reply of the server: the conversation is out of step
                await self.close()
                return SendResult(False, None, f"connection lost: {exc!r}"[:500], "transient")
            await self._reset(wire)
            kind = domain.smtp_failure_kind(exc.code)
            return SendResult(False, exc.code, f"{exc.code} {exc.message}"[:500], kind)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            return SendResult(False, None, f"connection lost: {exc!r}"[:500], "transient")

    async def _reset(self, wire: _Wire) -> None:
        """RSET after a refusal (the connection is dropped when that fails too)."""
        try:
            await wire.command(b"RSET\r\n")
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            await self.close()

    async def close(self) -> None:
        """Quit politely if possible."""
        wire, self.wire = self.wire, None
        if wire is not None:
            if not wire.lost:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await wire.command(b"QUIT\r\n")
            wire.lost = True
            wire.transport.close()
