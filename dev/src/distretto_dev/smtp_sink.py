"""A real SMTP server (aiosmtpd) for tests: keeps every accepted message, refuses or stalls on demand.

The ``smtp_sink`` fixture of :mod:`distretto_dev.testing` starts one on a free port per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from distretto_dev.testing import free_port


@dataclass
class Received:
    """One accepted message, for one recipient."""

    rcpt: str
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class SmtpSink:
    """An aiosmtpd server on a free port that keeps every accepted message.

    ``refuse`` maps an address to the reply its RCPT gets; ``refuse_all``, when set, is the reply
    every RCPT gets (a relay that is temporarily not taking mail: ``"451 4.3.0 try again later"``).
    ``delay`` slows each transaction down (at RCPT, before anything is accepted); ``hold()``
    parks every new transaction at RCPT until ``release()``.
    """

    port: int = 0
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    refuse_all: str | None = None
    parked: int = 0
    hold_after: int | None = None
    """Start holding by itself once this many messages were accepted (no race with the test)."""
    _gate: asyncio.Event | None = None
    _server: Any = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse_all is not None:
            return self.refuse_all
        if address in self.refuse:
            return self.refuse[address]
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._gate is None and self.hold_after is not None and len(self.received) >= self.hold_after:
            self.hold()
        if self._gate is not None:
            self.parked += 1
            try:
                await self._gate.wait()
            finally:
                self.parked -= 1
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        for rcpt in envelope.rcpt_tos:
            self.received.append(Received(rcpt=rcpt, raw=raw))
        return "250 2.0.0 Ok: queued"

    def hold(self) -> None:
        self._gate = asyncio.Event()

    def release(self) -> None:
        self.hold_after = None
        if self._gate is not None:
            self._gate.set()
        self._gate = None

    def count_by_rcpt(self) -> Counter[str]:
        return Counter(r.rcpt for r in self.received)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if r.rcpt == address]

    async def start(self) -> SmtpSink:
        self.port = self.port or free_port()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="sink.test", decode_data=False), "127.0.0.1", self.port
        )
        return self

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
