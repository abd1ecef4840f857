"""The page machinery: templates, languages, sessions, CSRF, and the pages for 401/403/404/service down.

Every page module uses :func:`render` and the :data:`UserDep` / :data:`OptionalUserDep`
dependencies; every router is built with :func:`page_router`, whose dependency checks the
CSRF token of every POST (forms and htmx requests alike).
"""

from __future__ import annotations

import hashlib
import io
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_compact_currency, format_currency, format_decimal, format_percent
from babel.support import NullTranslations, Translations
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from sqlmodel import col, select

from console import client, domain
from console.client import Gateway
from console.config import Settings
from console.models import BrowserSession, utcnow

PACKAGE = Path(__file__).resolve().parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"
TRANSLATIONS = PACKAGE / "translations"

ROME = ZoneInfo("Europe/Rome")
SESSION_COOKIE = "console_session"
CSRF_COOKIE = "console_csrf"
LANG_COOKIE = "console_lang"
CSRF_FIELD = "csrf_token"
# Per-request values live in the ASGI scope (request.state may be the lifespan's shared state).
USER_KEY = "console.user"
LOCALE_KEY = "console.locale"
NEW_CSRF_KEY = "console.new_csrf"
CSRF_HEADER = "x-csrf-token"


class LoginRequired(Exception):
    """The page needs a logged-in user."""


class CsrfFailed(Exception):
    """A POST without a valid CSRF token."""


class PageForbidden(Exception):
    """The console itself refuses (a section outside the role's navigation)."""


@cache
def translations(language: str) -> NullTranslations:
    """The message catalogue of a language, read from its ``.po`` file (no compile step)."""
    po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # ``codes|map("label")``: service codes in the page's language
    env.filters["label"] = pass_context(lambda context, code: domain.label(code, context.get("lang", "it")))
    return env


ENV = environment()


@dataclass
class User:
    """The person behind a browser session."""

    session_id: str
    token: str
    email: str
    role: str
    organisation_id: str | None

    @property
    def is_staff(self) -> bool:
        return self.role in domain.STAFF_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def acts_for(self, organisation_id: str | None) -> bool:
        """True when the user may act for that organisation (staff: any; a member: its own)."""
        return self.is_staff or (organisation_id is not None and organisation_id == self.organisation_id)


class Locale_:
    """Formatting for one language (dates, numbers, currency) and its gettext."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.locale = Locale.parse({"it": "it_IT", "en": "en_GB"}.get(language, language))
        self.t = translations(language)

    def gettext(self, message: str) -> str:
        return self.t.gettext(message)

    def label(self, code: Any) -> str:
        return domain.label(code, self.language)

    def labels(self) -> dict[str, str]:
        return {code: domain.label(code, self.language) for code in domain.LABELS}

    def number(self, value: Any, digits: int = 0) -> str:
        if value in (None, ""):
            return "–"
        return format_decimal(round(float(value), digits), locale=self.locale)

    def money(self, value: Any, compact: bool = False) -> str:
        if value in (None, ""):
            return "–"
        if compact:
            return format_compact_currency(float(value), "EUR", locale=self.locale, fraction_digits=1)
        return format_currency(float(value), "EUR", locale=self.locale)

    def percent(self, value: Any) -> str:
        return "–" if value in (None, "") else format_percent(float(value), locale=self.locale)

    def date(self, value: Any) -> str:
        if not value:
            return "–"
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value[:10])
            except ValueError:
                return value
        return format_date(value, "medium", locale=self.locale)

    def datetime(self, value: Any) -> str:
        if not value:
            return "–"
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return value
        return format_datetime(value, "short", tzinfo=ROME, locale=self.locale)


def settings_of(request: Request) -> Settings:
    return request.app.state.ctx.settings  # type: ignore[no-any-return]


def gateway_of(request: Request) -> Gateway:
    return request.app.state.ctx.context().get(Gateway)  # type: ignore[no-any-return]


def language_of(request: Request) -> str:
    settings = settings_of(request)
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in settings.languages:
        return chosen
    return domain.negotiate_language(
        request.headers.get("accept-language"), settings.languages, settings.default_language
    )


def locale_of(request: Request) -> Locale_:
    found: Locale_ | None = request.scope.get(LOCALE_KEY)
    if found is None:
        found = request.scope[LOCALE_KEY] = Locale_(language_of(request))
    return found


def secure_request(request: Request) -> bool:
    """True when the browser reached us over HTTPS (the gateway says so in X-Forwarded-Proto)."""
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


# -- CSRF: a random cookie and a signed copy of it in every form (double submit) --------------------


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return request.app.state.ctx.context().get(URLSafeTimedSerializer)  # type: ignore[no-any-return]


def csrf_cookie_value(request: Request) -> str:
    """The browser's CSRF cookie value, made (and set on the answer by :func:`render`) when missing."""
    value: str | None = request.cookies.get(CSRF_COOKIE) or request.scope.get(NEW_CSRF_KEY)
    if not value:
        value = request.scope[NEW_CSRF_KEY] = secrets.token_urlsafe(24)
    return value


def csrf_token(request: Request) -> str:
    return _serializer(request).dumps(csrf_cookie_value(request))


async def csrf_protect(request: Request) -> None:
    """Router dependency: every POST carries a token signed for this browser's CSRF cookie."""
    if request.method != "POST":
        return
    cookie = request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not cookie or not sent:
        raise CsrfFailed
    try:
        signed = _serializer(request).loads(sent, max_age=12 * 3600)
    except BadSignature as exc:
        raise CsrfFailed from exc
    if not secrets.compare_digest(str(signed), cookie):
        raise CsrfFailed


def page_router() -> APIRouter:
    """A router of pages: HTML answers, CSRF checked on every POST."""
    return APIRouter(dependencies=[Depends(csrf_protect)], include_in_schema=False)


# -- sessions ----------------------------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def optional_user(request: Request) -> User | None:
    if USER_KEY in request.scope:
        cached: User | None = request.scope[USER_KEY]
        return cached
    request.scope[USER_KEY] = None
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    ctx = request.app.state.ctx
    settings: Settings = ctx.settings
    now = utcnow()
    sid = _hash(token)
    async with ctx.db.read() as session:
        row = await session.get(BrowserSession, sid)
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    seen = row.last_seen if row.last_seen.tzinfo else row.last_seen.replace(tzinfo=UTC)
    if expires <= now or now - seen > timedelta(minutes=settings.session_idle_minutes):
        await end_session(request, sid)
        return None
    token = row.gateway_token
    if expires - now < timedelta(seconds=settings.token_refresh_before_seconds):
        # The gateway's tokens are short-lived: while the person is active, swap the token for a fresh
        # one before it runs out. The gateway refuses when the user was disabled or changed since:
        # then the session ends here, as it should.
        refreshed = await _refresh_token(request, token)
        if refreshed is None:
            await end_session(request, sid)
            return None
        token, ttl = refreshed
        async with ctx.db.transaction() as session:
            fresh = await session.get(BrowserSession, sid)
            if fresh is not None:
                fresh.gateway_token = token
                fresh.expires_at = now + timedelta(seconds=max(60, ttl - 30))
                fresh.last_seen = now
    elif now - seen > timedelta(minutes=1):  # one write a minute at most, not one per request
        async with ctx.db.transaction() as session:
            fresh = await session.get(BrowserSession, sid)
            if fresh is not None:
                fresh.last_seen = now
    user = User(sid, token, row.email, row.role, row.organisation_id)
    request.scope[USER_KEY] = user
    return user


async def _refresh_token(request: Request, token: str) -> tuple[str, int] | None:
    """A fresh gateway token for the session's current one; ``None`` when the gateway refuses it."""
    gateway = gateway_of(request)
    try:
        issued = await gateway.post("/auth/refresh", token)
    except (client.SessionExpired, client.Forbidden, client.Invalid, client.NotFound):
        return None
    except client.ServiceDown:
        return token, 60  # the gateway is away: keep the session; the next request tries again
    return str(issued["access_token"]), int(issued.get("expires_in", 900))


async def require_user(request: Request) -> User:
    user = await optional_user(request)
    if user is None:
        raise LoginRequired
    if not domain.may_open(user.role, request.url.path):
        raise PageForbidden
    return user


async def require_staff(request: Request) -> User:
    user = await require_user(request)
    if not user.is_staff:
        raise PageForbidden
    return user


OptionalUserDep = Annotated[User | None, Depends(optional_user)]
UserDep = Annotated[User, Depends(require_user)]
StaffDep = Annotated[User, Depends(require_staff)]


async def start_session(request: Request, response: Response, token: str, me: dict[str, Any], ttl: int) -> None:
    """Record a new session and set its cookie (HttpOnly, SameSite=Lax, Secure over HTTPS)."""
    raw = secrets.token_urlsafe(32)
    ctx = request.app.state.ctx
    now = utcnow()
    async with ctx.db.transaction() as session:
        session.add(
            BrowserSession(
                id=_hash(raw),
                gateway_token=token,
                email=str(me.get("email") or ""),
                role=str(me.get("role") or ""),
                organisation_id=me.get("organisation_id"),
                created_at=now,
                last_seen=now,
                expires_at=now + timedelta(seconds=max(60, ttl - 30)),
            )
        )
    # A browser-session cookie: the server decides when the session ends (idle time, a refused refresh).
    response.set_cookie(SESSION_COOKIE, raw, httponly=True, samesite="lax", secure=secure_request(request), path="/")


async def end_session(request: Request, session_id: str | None = None) -> None:
    ctx = request.app.state.ctx
    sid = session_id
    if sid is None:
        token = request.cookies.get(SESSION_COOKIE)
        sid = _hash(token) if token else None
    if sid is None:
        return
    async with ctx.db.transaction() as session:
        row = await session.get(BrowserSession, sid)
        if row is not None:
            await session.delete(row)


async def purge_sessions(ctx: Any) -> int:
    """Delete sessions whose token expired (a periodic job)."""
    now = utcnow()
    async with ctx.db.transaction() as session:
        rows = (
            (await session.execute(select(BrowserSession).where(col(BrowserSession.expires_at) < now))).scalars().all()
        )
        for row in rows:
            await session.delete(row)
    return len(rows)


# -- rendering --------------------------------------------------------------------------------------


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page (or an htmx fragment) in the request's language, with the CSRF cookie set when new."""
    loc = locale_of(request)
    user: User | None = request.scope.get(USER_KEY)
    values = {
        "request": request,
        "user": user,
        "lang": loc.language,
        "languages": settings_of(request).languages,
        "_": loc.gettext,
        "fmt": loc,
        "L": loc.label,
        "labels": loc.labels(),
        "csrf_token": csrf_token(request),
        "nav": domain.navigation(user.role if user else None),
        "path": request.url.path,
        "htmx": request.headers.get("hx-request") == "true",
        **(context or {}),
    }
    html = ENV.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status, headers=headers)
    response.headers.setdefault("Cache-Control", "no-store")
    new = request.scope.get(NEW_CSRF_KEY)
    if new:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="lax", secure=secure_request(request), path="/")
    return response


def redirect(request: Request, url: str) -> Response:
    """A redirect that also works for htmx requests (which follow ``HX-Redirect``)."""
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
