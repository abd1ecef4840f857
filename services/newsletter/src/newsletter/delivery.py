# Over 500 lines: template compiler, MIME writer, SMTP pool and the exactly-once engine in one
# module; their split is open work of the service-shape issue (the engine's guarantee is documented below).
"""The delivery engine: renders campaign mails and sends each exactly once, over a pool of SMTP connections.

Exactly once, also across a crash
---------------------------------
The audience of a campaign is frozen into ``delivery`` rows, one per (campaign, subscriber)
(unique), when it starts. A worker *claims* a batch in one transaction (``pending → sending``
with a random claim token and ``claimed_at``; PostgreSQL ``FOR UPDATE SKIP LOCKED``), then for
each row: renders, and sends over its own SMTP connection. The outcome (``sent`` with the
server's reply) goes to a group committer that writes the outcomes of all connections in one
transaction. The worker does not wait for that commit before it starts the next message: it
sends the next ``MAIL FROM`` and ``RCPT TO`` at once, but waits for the previous outcome to be
durable **before it sends ``DATA``**. Rows of a worker that died (SIGKILL) keep ``sending`` with
an old ``claimed_at``; once the lease has run out they go back to ``pending`` and are sent by
someone else. A live worker renews its lease (with its group commits and on every scheduler
tick), and a process never takes back the claims of its own live workers, however late they are.

The window, exactly: per connection, at most one message can have been accepted by the server
(``250`` after the final ``.``) without its ``sent`` being durable — from that ``250`` until the
group commit that carries it (the committer's linger, ``NEWSLETTER_COMMIT_LINGER_SECONDS``,
4 ms by default, plus the transaction). The next message of the connection cannot reach
``DATA`` inside that interval, so it cannot be accepted too. If the process dies then, that one
message is sent again after the lease: at most one repeat per connection, as before the
pipelining. SMTP has no two-phase commit, so no sender can close this alone (the deterministic
``Message-ID`` per (campaign, recipient) lets a downstream MTA or the mail catcher drop that
repeat). A crash at any other moment — before ``DATA`` ended, or after the commit — neither
skips nor repeats anyone: a message whose envelope was sent but whose ``DATA`` was not is simply
abandoned by the server when the connection drops. A progress pointer (listmonk) repeats or
skips a whole batch instead.

Outcomes of rows that were never sent (skipped, released on pause, failed to render) are handed
to the committer without waiting: losing one in a crash only sends its row round again after
the lease.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import email.utils
import hashlib
import re
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from typing import Any

import aiosmtplib
import markupsafe
import sqlalchemy as sa
from jinja2 import TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from prometheus_client import Counter, Gauge

from distretto_shared import metrics
from distretto_shared.contracts import newsletter as contracts
from distretto_shared.db import Database
from distretto_shared.logging import get_logger
from distretto_shared.outbox import add_event
from newsletter import domain, rendering
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
MAIL_KINDS = ("campaign", "confirmation", "welcome")
"""``Delivery.kind`` values (the ``kind`` label of SENT and FAILED)."""
# At zero from the first scrape, so rate() and increase() see the first failure or bounce.
metrics.zero(SENT, MAIL_KINDS)
metrics.zero(FAILED, MAIL_KINDS)
metrics.zero(BOUNCED, [k.value for k in domain.BounceKind])
metrics.zero(SUPPRESSED, [k.value for k in domain.BounceKind])

D = Delivery.__table__  # type: ignore[attr-defined]
SUB = Subscriber.__table__  # type: ignore[attr-defined]
SS = Subscription.__table__  # type: ignore[attr-defined]
C = Campaign.__table__  # type: ignore[attr-defined]

_MARK_SENT = (
    D.update()
    .where(D.c.id == sa.bindparam("_id"), D.c.claim_token == sa.bindparam("_token"))
    .values(
        status="sent",
        smtp_code=sa.bindparam("_code"),
        smtp_reply=sa.bindparam("_reply"),
        smtp_server=sa.bindparam("_server"),
        message_id=sa.bindparam("_mid"),
        sent_at=sa.bindparam("_now"),
        attempts=D.c.attempts + 1,
    )
)
_SET_STATUS = (
    D.update()
    .where(D.c.id == sa.bindparam("_id"), D.c.claim_token == sa.bindparam("_token"))
    .values(status=sa.bindparam("_status"), claim_token=None)
)

_SIMPLE_STATUS = {"released": "pending", "skipped": "skipped"}
"""What a row becomes when its message was not sent: released (paused, stopping) or skipped (unsubscribed)."""

# -- rendering -------------------------------------------------------------------

_ENV_HTML = rendering.BoundedSandbox(autoescape=True)
_ENV_TEXT = rendering.BoundedSandbox(autoescape=False)


def check_template(source: str, *, html: bool) -> None:
    """Raise ``ValueError`` naming the problem when ``source`` is not a valid template or goes past a limit."""
    try:
        template = (_ENV_HTML if html else _ENV_TEXT).from_string(source)
    except TemplateError as exc:
        raise ValueError(f"template error: {exc}") from exc
    try:
        rendering.check_limits(template)
    except rendering.TemplateLimitError as exc:
        raise ValueError(f"the template goes past the rendering limits: {exc}") from exc


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


# -- compiled templates: rendered once per campaign, per-recipient fields substituted -----------

Slot = tuple[str, ...]
"""A per-recipient field: ("subscriber", "name"), ("subscriber", "attributes", "city"), ("unsubscribe_url",)."""

_LINK_NAMES = frozenset({"unsubscribe_url", "preferences_url", "unsubscribe_token"})
_RECIPIENT_NAMES = _LINK_NAMES | {"subscriber"}
_SUBSCRIBER_FIELDS = frozenset({"name", "email", "language"})
# Constructs that could transform, capture or re-scope printed output: a template using any of them
# is rendered by Jinja for every mail (correct, only slower).
_OPAQUE_NODES = (
    nodes.Macro,
    nodes.CallBlock,
    nodes.FilterBlock,
    nodes.AssignBlock,
    nodes.EvalContextModifier,
    nodes.Block,
    nodes.Extends,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
)
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # private-use characters: autoescape leaves them alone
_MARK = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")


def _slot_of(node: nodes.Node) -> Slot | None:
    """The per-recipient field an output expression prints as it is (no filter, no test), if any."""
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in _LINK_NAMES:
        return (node.name,)
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return None
    inner = node.node
    if isinstance(node, nodes.Getattr):
        key: Any = node.attr
    elif isinstance(node.arg, nodes.Const):
        key = node.arg.value
    else:
        return None
    if not isinstance(key, str):
        return None
    if isinstance(inner, nodes.Name) and inner.name == "subscriber" and inner.ctx == "load":
        return ("subscriber", key) if key in _SUBSCRIBER_FIELDS and isinstance(node, nodes.Getattr) else None
    if (
        isinstance(inner, nodes.Getattr)
        and inner.attr == "attributes"
        and isinstance(inner.node, nodes.Name)
        and inner.node.name == "subscriber"
        and inner.node.ctx == "load"
        and not hasattr(dict, key)  # subscriber.attributes.items is the method, not a field
    ):
        return ("subscriber", "attributes", key)
    return None


def template_slots(ast: nodes.Template) -> list[Slot] | None:
    """The per-recipient fields of a template when each is only ever printed as it is, else ``None``.

    Then the template's output is a fixed sequence of literal text and field values: it can be
    rendered once per campaign and each mail only joins the pieces. A field used in a condition,
    a loop, a filter, an assignment or a macro makes the answer ``None``.
    """
    if any(True for _ in ast.find_all(_OPAQUE_NODES)):
        return None
    slots: list[Slot] = []
    allowed: set[int] = set()
    for output in ast.find_all(nodes.Output):
        for expr in output.nodes:
            slot = _slot_of(expr)
            if slot is not None:
                slots.append(slot)
                allowed.update(id(n) for n in expr.find_all(nodes.Name))
                allowed.add(id(expr))
    for name in ast.find_all(nodes.Name):
        if name.name in _RECIPIENT_NAMES and id(name) not in allowed:
            return None
    return slots


class _Missing(Exception):
    """A field the fast path cannot supply (a missing attribute): Jinja renders that mail."""


class CompiledTemplate:
    """One template of a campaign: literal pieces and per-recipient slots, or Jinja for every mail."""

    def __init__(self, env: ImmutableSandboxedEnvironment, source: str, constant: dict[str, Any]) -> None:
        self.template = env.from_string(source)
        self.html = env.autoescape is True
        self.pieces: list[str | Slot] | None = None
        if _MARK_OPEN in source or _MARK_CLOSE in source:
            return
        slots = template_slots(env.parse(source))
        if slots is None:
            return
        order = list(dict.fromkeys(slots))
        marks = {slot: f"{_MARK_OPEN}{i}{_MARK_CLOSE}" for i, slot in enumerate(order)}
        subscriber: dict[str, Any] = {"attributes": {}}
        context = dict(constant, subscriber=subscriber)
        for slot, mark in marks.items():
            if slot[0] != "subscriber":
                context[slot[0]] = mark
            elif len(slot) == 2:
                subscriber[slot[1]] = mark
            else:
                subscriber["attributes"][slot[2]] = mark
        try:
            out = rendering.render(self.template, context)
        except Exception:  # the campaign's own data is wrong: every mail fails in Jinja, with its message
            return
        parts = _MARK.split(out)
        if out.count(_MARK_OPEN) != len(parts) // 2:  # a marker altered on the way: do not trust the pieces
            return
        pieces: list[str | Slot] = []
        for i, part in enumerate(parts):
            if i % 2:
                pieces.append(order[int(part)])
            elif part:
                pieces.append(part)
        self.pieces = pieces

    def render(self, values: dict[Slot, Any], context: dict[str, Any]) -> str:
        """The template's output for one recipient (``values`` for the fast path, ``context`` for Jinja)."""
        if self.pieces is not None:
            try:
                return self._join(values)
            except _Missing:
                pass
        return rendering.render(self.template, context)

    def _join(self, values: dict[Slot, Any]) -> str:
        out = []
        for piece in self.pieces or ():
            if isinstance(piece, str):
                out.append(piece)
                continue
            try:
                value = values[piece]
            except KeyError:
                raise _Missing(piece) from None
            out.append(str(markupsafe.escape(value)) if self.html else str(value))
        return "".join(out)


@dataclass
class RenderedMail:
    """The parts of one mail, before MIME."""

    subject: str
    text: str
    html: str


class CampaignRenderer:
    """A campaign's compiled templates (sandboxed Jinja2; HTML autoescaped).

    ``constant`` holds the context every mail shares (``campaign``): with it, templates whose
    per-recipient fields are only printed are rendered once, and each mail joins the pieces.
    """

    def __init__(self, subject: str, body_html: str, body_text: str, constant: dict[str, Any] | None = None) -> None:
        constant = constant or {}
        self.subject_t = CompiledTemplate(_ENV_TEXT, subject, constant)
        self.html_t = CompiledTemplate(_ENV_HTML, body_html, constant)
        self.text_t = CompiledTemplate(_ENV_TEXT, body_text, constant)

    @property
    def compiled(self) -> bool:
        """Whether all three parts take the fast path."""
        return all(t.pieces is not None for t in (self.subject_t, self.html_t, self.text_t))

    def render(self, context: dict[str, Any], values: dict[Slot, Any] | None = None) -> RenderedMail:
        """Render the three parts with the subscriber's fields (``TemplateError`` when a field is missing)."""
        if values is None:
            values = slot_values(context)
        return RenderedMail(
            subject=domain.clean_header_text(self.subject_t.render(values, context)),
            html=self.html_t.render(values, context),
            text=self.text_t.render(values, context),
        )


def slot_values(context: dict[str, Any]) -> dict[Slot, Any]:
    """The slot values a Jinja context carries (what the fast path substitutes)."""
    values: dict[Slot, Any] = {}
    sub = context.get("subscriber")
    if isinstance(sub, dict):
        for key in _SUBSCRIBER_FIELDS:
            if key in sub:
                values[("subscriber", key)] = sub[key]
        attrs = sub.get("attributes")
        if isinstance(attrs, dict):
            for key, value in attrs.items():
                values[("subscriber", "attributes", key)] = value
    for key in _LINK_NAMES:
        if key in context:
            values[(key,)] = context[key]
    return values


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


def _qp(text: str, cache: dict[str, bytes] | None = None) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends (always ending in one).

    Quoted-printable encodes every line on its own, so with a ``cache`` the lines every mail of a
    campaign shares are encoded once; only the lines holding a recipient's fields are encoded per mail.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cache is None:
        data = text.encode("utf-8")
        if not data.endswith(b"\n"):
            data += b"\n"
        return binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")
    lines = text.split("\n")
    if lines[-1] == "" and len(lines) > 1:
        lines.pop()
    out = []
    for line in lines:
        encoded = cache.get(line)
        if encoded is None:
            encoded = binascii.b2a_qp(line.encode("utf-8") + b"\n", istext=True).replace(b"\n", b"\r\n")
            if len(cache) < 512:
                cache[line] = encoded
        out.append(encoded)
    return b"".join(out)


def message_id_for(campaign_id: str | None, key: str, domain_name: str) -> str:
    """A deterministic Message-ID: the same (campaign, recipient) always gets the same one."""
    digest = hashlib.sha256(f"{campaign_id}:{key}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain_name}>"


_date_cache: tuple[int, str] = (0, "")


def _date_now() -> str:
    """The Date header value (formatted once a second)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    """Header lines, each value cleaned of CR/LF and control characters (for headers every mail shares)."""
    return "".join(f"{name}: {domain.clean_header_text(value, limit=1900)}\r\n" for name, value in headers).encode()


_PART_HEAD = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
_PLAIN_HEAD = _PART_HEAD % b"plain"
_HTML_HEAD = _PART_HEAD % b"html"


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
    shared_headers: bytes = b"",
    qp_cache: dict[str, bytes] | None = None,
) -> bytes:
    """An RFC 5322 message, multipart/alternative (text then HTML), quoted-printable UTF-8, CRLF.

    Written directly rather than through ``email.message.EmailMessage`` (which costs ~2 ms a
    message); the tests parse every message back with the standard library and check it has no
    defects. Every dynamic header value is stripped of CR/LF and control characters first;
    ``shared_headers`` are lines built once by :func:`header_block`.
    """
    # "=_" never occurs in quoted-printable output ("=" is always encoded), so it cannot clash.
    boundary = "=_d" + message_id[1:25]
    headers = [
        f"From: {from_header}",
        f"To: {format_address(to_name, to_addr)}",
        f"Subject: {_encode_header_text(subject, 'Subject')}",
        f"Date: {date or _date_now()}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
    ]
    headers += [f"{name}: {domain.clean_header_text(value, limit=1900)}" for name, value in extra_headers]
    b = boundary.encode()
    return b"".join(
        [
            "\r\n".join(headers).encode("utf-8"),
            b"\r\n",
            shared_headers,
            b'Content-Type: multipart/alternative; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n",
            _PLAIN_HEAD,
            _qp(text, qp_cache),
            b"--" + b + b"\r\n",
            _HTML_HEAD,
            _qp(html, qp_cache),
            b"--" + b + b"--\r\n",
        ]
    )


class CampaignMail:
    """What every mail of one campaign shares, prepared once: compiled templates and invariant headers."""

    def __init__(
        self, settings: Settings, campaign: Campaign, template: Template, *, from_header: str, subject_prefix: str = ""
    ) -> None:
        from newsletter import service  # links and list headers are the service's business

        self.settings = settings
        self.campaign_id = campaign.id
        self.lists = list(campaign.lists)
        self.from_header = from_header
        campaign_ctx = {"id": campaign.id, "name": campaign.name, "data": campaign.data}
        self.campaign_ctx = campaign_ctx
        self.renderer = CampaignRenderer(
            subject_prefix + campaign.subject, template.body_html, template.body_text, {"campaign": campaign_ctx}
        )
        # every header but List-Unsubscribe (it names the recipient's token) is the same for all mails
        probe = service.list_headers(settings, {"unsubscribe_url": "", "unsubscribe_token": ""}, campaign)
        self.shared_headers = header_block([h for h in probe if h[0] != "List-Unsubscribe"])
        self.qp_cache: dict[str, bytes] = {}

    def compose(self, item: Claimed) -> tuple[str, bytes]:
        """(Message-ID, message bytes) of one recipient."""
        from newsletter import service

        assert item.email is not None and item.subscriber_id is not None
        links = service.links_for(self.settings, item.subscriber_id, self.campaign_id)
        subscriber = {"name": item.name, "email": item.email, "language": item.language, "attributes": item.attributes}
        values: dict[Slot, Any] = {
            ("subscriber", "name"): item.name,
            ("subscriber", "email"): item.email,
            ("subscriber", "language"): item.language,
            ("unsubscribe_url",): links["unsubscribe_url"],
            ("preferences_url",): links["preferences_url"],
            ("unsubscribe_token",): links["unsubscribe_token"],
        }
        for key, value in item.attributes.items():
            values[("subscriber", "attributes", key)] = value
        mail = self.renderer.render({"subscriber": subscriber, "campaign": self.campaign_ctx, **links}, values)
        text, html = footer(
            mail.text, mail.html, unsubscribe_url=links["unsubscribe_url"], preferences_url=links["preferences_url"]
        )
        message_id = message_id_for(self.campaign_id, item.subscriber_id, self.settings.mail_domain)
        return message_id, build_message(
            from_header=self.from_header,
            to_name=item.name,
            to_addr=item.email,
            subject=mail.subject,
            text=text,
            html=html,
            message_id=message_id,
            extra_headers=[("List-Unsubscribe", service.list_unsubscribe(self.settings, links))],
            shared_headers=self.shared_headers,
            qp_cache=self.qp_cache,
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

    async def send(
        self, sender: str, recipient: str, message: bytes, *, before_data: Awaitable[Any] | None = None
    ) -> SendResult:
        """MAIL, RCPT, DATA; the reply of the last step that ran.

        ``before_data`` is awaited between RCPT and DATA: the engine passes the durability of the
        previous message's outcome, so the envelope of this message travels while that commit runs,
        yet this message cannot be accepted before the previous one is recorded.
        """
        try:
            client = await self._ensure()
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            return SendResult(False, None, f"connect failed: {exc}", "transient")
        try:
            await client.mail(sender)
            await client.rcpt(recipient)
            if before_data is not None:
                await before_data
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


class SqliteRecorder:
    """The group commit's common case on SQLite: a plain ``sqlite3`` connection on one thread of its own.

    Through aiosqlite every statement costs several thread hand-offs (cursor, execute, fetch, close,
    commit) and SQLAlchemy's per-statement work; here one group commit is one call on that thread:
    ``BEGIN IMMEDIATE``, an ``executemany`` per kind of outcome, ``COMMIT``. The same file, the same
    PRAGMAs (WAL, ``synchronous=NORMAL``, busy timeout) as the service's pool; timestamps are written
    by SQLAlchemy's own SQLite DATETIME processor, so they compare with the rest.
    """

    SENT = (
        "UPDATE delivery SET status = 'sent', smtp_code = ?, smtp_reply = ?, smtp_server = ?, message_id = ?,"
        " sent_at = ?, attempts = attempts + 1 WHERE id = ? AND claim_token = ?"
    )
    STATUS = "UPDATE delivery SET status = ?, claim_token = NULL WHERE id = ? AND claim_token = ?"

    def __init__(self, path: str, dialect: Any) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsletter-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._timestamp = D.c.sent_at.type.dialect_impl(dialect).bind_processor(dialect)

    @classmethod
    def for_database(cls, db: Database) -> SqliteRecorder | None:
        """A recorder for a file-backed SQLite database (``None`` otherwise)."""
        if not db.sqlite or db.schema:
            return None
        path = sa.engine.make_url(db.url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        return cls(path, db.engine.dialect)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
        return self._conn

    def _write(self, sent: list[tuple[Any, ...]], simple: list[tuple[Any, ...]], renew: list[str], now: str) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if sent:
                conn.executemany(self.SENT, sent)
            if simple:
                conn.executemany(self.STATUS, simple)
            if renew:
                marks = ",".join("?" * len(renew))
                conn.execute(
                    f"UPDATE delivery SET claimed_at = ? WHERE status = 'sending' AND claim_token IN ({marks})",
                    [now, *renew],
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
            raise

    async def write(self, sent: list[Outcome], simple: list[Outcome], renew: list[str], now: datetime) -> None:
        """Record sent and released/skipped outcomes (and renew leases) in one transaction."""
        stamp = self._timestamp(now) if self._timestamp else now.isoformat(" ")
        sent_rows = [(o.code, o.reply, o.server, o.message_id, stamp, o.delivery_id, o.token) for o in sent]
        simple_rows = [(_SIMPLE_STATUS[o.status], o.delivery_id, o.token) for o in simple]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._write, sent_rows, simple_rows, renew, stamp)

    def close(self) -> None:
        """Close the connection on its thread and let the thread go."""

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(_close)
        self._executor.shutdown(wait=False)


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
        from newsletter import service

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

    # direct sends (test mails)

    async def send_now(self, recipient: str, message: bytes) -> SendResult:
        """Send one message at once on a fresh connection to the first server (test sends)."""
        server = self.servers[0]
        conn = SmtpConnection(server, self.settings)
        try:
            return await conn.send(self.settings.from_address, recipient, message)
        finally:
            await conn.close()
