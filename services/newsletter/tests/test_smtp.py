"""The SMTP connection: the envelope addresses the engine quotes itself are exactly aiosmtplib's, any
other address is left to aiosmtplib (which refuses what cannot be a mailbox, so nothing can be
smuggled into a command); the commands it writes itself on aiosmtplib's protocol, against a real
aiosmtpd server (lines starting with a dot, refusals, multi-line replies, a dropped connection)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
import uvloop
from aiosmtpd.smtp import SMTP
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from distretto_dev.smtp_sink import SmtpSink
from distretto_dev.testing import free_port
from newsletter.config import Settings
from newsletter.delivery.smtp import SmtpConnection, _envelope, dot_stuffed, parse_servers


@pytest.mark.parametrize("address", ["r1@example.org", "a.b+c_d@x-y.example", "o'neil@example.org"])
def test_a_plain_address_is_quoted_as_aiosmtplib_quotes_it(address: str) -> None:
    assert _envelope(address) == quote_address(address).encode("ascii")


@pytest.mark.parametrize(
    "address", ["Zoë@example.org", "a b@x.org", "a\r\nRCPT TO:<x@y>@x.org", "<a@b.c>", "a@b.c>", "", "a@b@c"]
)
def test_anything_else_goes_through_aiosmtplib(address: str) -> None:
    assert _envelope(address) is None


# -- the hot path (MAIL, RCPT, DATA written on aiosmtplib's protocol) against a real aiosmtpd server ----


def _settings(port: int, **kw: Any) -> Settings:
    return Settings(
        database_url="sqlite+aiosqlite://",
        smtp_servers=f"127.0.0.1:{port}",
        link_base_url="http://service",
        secret_key=secrets.token_urlsafe(32),
        **kw,
    )


def _connection(port: int, **kw: Any) -> SmtpConnection:
    settings = _settings(port, **kw)
    return SmtpConnection(parse_servers(settings)[0], settings)


MESSAGE = b"Subject: hi\r\n\r\nfirst line\r\n.starts with a dot\r\n.\r\n..two dots\r\nlast\r\n"


async def test_messages_arrive_byte_for_byte_with_lines_starting_with_a_dot(sink: SmtpSink) -> None:
    conn = _connection(sink.port)
    try:
        first = await conn.send("news@example.org", "a@example.org", MESSAGE)
        second = await conn.send("news@example.org", "b@example.org", b".a dot first\r\nno line end at the end")
    finally:
        await conn.close()
    assert (first.ok, first.code, second.ok) == (True, 250, True)
    assert [(r.rcpt, r.raw) for r in sink.received] == [
        ("a@example.org", MESSAGE),
        ("b@example.org", b".a dot first\r\nno line end at the end\r\n"),
    ]


@pytest.mark.parametrize(
    "message",
    [b"bare\nline feeds\n.dot\n", b"a bare\rcarriage return\r\n", b"mixed\r\nends\n.x\r.y\r\n", b".", b"\r\n.\r\n"],
)
def test_dot_stuffing_is_aiosmtplibs(message: bytes) -> None:
    assert dot_stuffed(message) == PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"


async def test_a_refused_recipient_is_permanent_or_transient_and_the_connection_goes_on(sink: SmtpSink) -> None:
    sink.refuse["gone@example.org"] = "550 5.1.1 <gone@example.org>: no such user"
    sink.refuse["later@example.org"] = "451-4.3.0 try again\r\n451 4.3.0 later"  # a multi-line reply
    conn = _connection(sink.port)
    try:
        gone = await conn.send("news@example.org", "gone@example.org", MESSAGE)
        later = await conn.send("news@example.org", "later@example.org", MESSAGE)
        fine = await conn.send("news@example.org", "fine@example.org", MESSAGE)
    finally:
        await conn.close()
    assert (gone.ok, gone.code, gone.kind) == (False, 550, "permanent")
    assert (later.ok, later.code, later.kind) == (False, 451, "transient")
    assert later.reply == "451 4.3.0 try again\n4.3.0 later"
    assert fine.ok
    assert [r.rcpt for r in sink.received] == ["fine@example.org"]


class _Dropping:
    """An aiosmtpd handler that drops the connection at the DATA of a marked recipient, or answers
    DATA with a multi-line reply."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if "drop@example.org" in envelope.rcpt_tos:
            assert server.transport is not None
            server.transport.close()
            return "250 never seen"
        self.received += envelope.rcpt_tos
        return "250-2.0.0 queued\r\n250 2.0.0 as 12345"


async def test_a_dropped_connection_is_transient_and_the_next_send_reconnects() -> None:
    handler = _Dropping()
    port = free_port()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="drop.test"), "127.0.0.1", port
    )
    conn = _connection(port)
    try:
        before = await conn.send("news@example.org", "a@example.org", MESSAGE)
        dropped = await conn.send("news@example.org", "drop@example.org", MESSAGE)
        after = await conn.send("news@example.org", "b@example.org", MESSAGE)
    finally:
        await conn.close()
        server.close()
    assert (before.ok, before.reply) == (True, "250 2.0.0 queued\n2.0.0 as 12345")
    assert (dropped.ok, dropped.code, dropped.kind) == (False, None, "transient")
    assert dropped.reply.startswith("connection lost")
    assert after.ok
    assert handler.received == ["a@example.org", "b@example.org"]


async def test_nothing_is_sent_when_the_check_before_data_fails(sink: SmtpSink) -> None:
    conn = _connection(sink.port)

    async def refuse() -> None:
        raise LookupError("lease lost")

    try:
        with pytest.raises(LookupError):
            await conn.send("news@example.org", "a@example.org", MESSAGE, before_data=refuse)
        after = await conn.send("news@example.org", "b@example.org", MESSAGE)
    finally:
        await conn.close()
    assert after.ok
    assert [r.rcpt for r in sink.received] == ["b@example.org"]


async def test_replies_split_across_reads_malformed_or_unasked_for() -> None:
    """A server written by hand: a multi-line reply in pieces, a reply that is not SMTP (the connection
    is dropped, the next send opens a new one), a second reply sent with the one asked for."""
    sessions: list[list[bytes]] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen: list[bytes] = []
        sessions.append(seen)
        writer.write(b"220 hand.test ESMTP\r\n")
        while line := await reader.readline():
            seen.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-hand.test\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n")
            elif verb == b"MAIL" and b"garbage@" in line:
                writer.write(b"hello there\r\n")
            elif verb == b"RCPT" and b"split@" in line:
                writer.write(b"250-2.1.5 first")
                await writer.drain()
                await asyncio.sleep(0)
                writer.write(b" part\r\n25")
                await writer.drain()
                writer.write(b"0 2.1.5 second\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                while (body := await reader.readline()) != b".\r\n":
                    if not body:
                        return
                # after the fourth message, a second reply with the first: the client takes the first and
                # drops the connection
                writer.write(b"250 2.0.0 queued\r\n" + (b"421 4.4.2 idle\r\n" if len(seen) > 6 else b""))
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(session, "127.0.0.1", port)
    conn = _connection(port)
    try:
        split = await conn.send("news@example.org", "split@example.org", MESSAGE)
        garbage = await conn.send("garbage@example.org", "a@example.org", MESSAGE)
        after = await conn.send("news@example.org", "b@example.org", MESSAGE)
        again = await conn.send("news@example.org", "c@example.org", MESSAGE)
        last = await conn.send("news@example.org", "d@example.org", MESSAGE)
    finally:
        await conn.close()
        server.close()
    assert (split.ok, split.reply) == (True, "250 2.0.0 queued")
    assert (garbage.ok, garbage.code, garbage.kind) == (False, None, "transient")
    assert after.ok and again.ok and last.ok
    assert len(sessions) == 3  # a new connection after the garbage, and after the unasked-for reply
    assert [line[:4] for line in sessions[0]] == [b"EHLO", b"MAIL", b"RCPT", b"DATA", b"MAIL", b"QUIT"]


def test_the_hot_path_runs_on_uvloop_too() -> None:
    """The service's event loop (uvloop): its transports are handed to the wire the same way."""

    async def main() -> list[str]:
        sink = await SmtpSink().start()
        conn = _connection(sink.port)
        try:
            results = [await conn.send("news@example.org", f"r{i}@example.org", MESSAGE, crlf=True) for i in range(3)]
        finally:
            await conn.close()
            await sink.stop()
        assert all(r.ok for r in results)
        return [r.rcpt for r in sink.received]

    assert uvloop.run(main()) == ["r0@example.org", "r1@example.org", "r2@example.org"]


async def test_a_server_that_stops_answering_times_out_and_the_next_send_reconnects(sink: SmtpSink) -> None:
    conn = _connection(sink.port, smtp_timeout=0.2)
    try:
        sink.hold()  # every RCPT parked: no reply
        stalled = await conn.send("news@example.org", "a@example.org", MESSAGE)
        sink.release()
        after = await conn.send("news@example.org", "b@example.org", MESSAGE)
    finally:
        await conn.close()
    assert (stalled.ok, stalled.code, stalled.kind) == (False, None, "transient")
    assert "TimeoutError" in stalled.reply
    assert after.ok
    assert [r.rcpt for r in sink.received] == ["b@example.org"]
