"""Pure rules of the newsletter: campaign lifecycle, signed links, addresses, headers, rates, bounces.

No I/O and no framework here: everything is a function of its arguments (the clock is passed in).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class CampaignStatus(StrEnum):
    """Where a campaign is in its life."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class CampaignAction(StrEnum):
    """What a user (or the scheduler) can do to a campaign."""

    SCHEDULE = "schedule"
    UNSCHEDULE = "unschedule"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    FINISH = "finish"


S = CampaignStatus
TRANSITIONS: dict[CampaignAction, tuple[set[CampaignStatus], CampaignStatus]] = {
    CampaignAction.SCHEDULE: ({S.DRAFT, S.SCHEDULED}, S.SCHEDULED),
    CampaignAction.UNSCHEDULE: ({S.SCHEDULED}, S.DRAFT),
    CampaignAction.START: ({S.DRAFT, S.SCHEDULED}, S.RUNNING),
    CampaignAction.PAUSE: ({S.RUNNING}, S.PAUSED),
    CampaignAction.RESUME: ({S.PAUSED}, S.RUNNING),
    CampaignAction.CANCEL: ({S.DRAFT, S.SCHEDULED, S.RUNNING, S.PAUSED}, S.CANCELLED),
    CampaignAction.FINISH: ({S.RUNNING}, S.FINISHED),
}
EDITABLE = {S.DRAFT, S.SCHEDULED}


class IllegalTransition(Exception):
    """The action is not allowed from the campaign's current status."""


def transition(current: str, action: CampaignAction) -> CampaignStatus:
    """The status after ``action``, or :class:`IllegalTransition`."""
    allowed, target = TRANSITIONS[action]
    if CampaignStatus(current) not in allowed:
        raise IllegalTransition(
            f"cannot {action.value} a campaign that is {current} (allowed from: {', '.join(sorted(allowed))})"
        )
    return target


# -- addresses ---------------------------------------------------------------

# Deliberately plain: an address must be deliverable by an SMTP server, not merely RFC 5322-parseable.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def normalise_email(value: str) -> str:
    """Lower-cased, trimmed address; ``ValueError`` when it is not a usable address."""
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email:
        raise ValueError("not a valid email address")
    return email


def email_sha256(email: str) -> str:
    """SHA-256 of the lower-cased address (how membership names an erased person)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


_ADDRESS_IN_TEXT = re.compile(r"[^\s<>@\"'(),;:]+@[^\s<>@\"'(),;:]+")


def redact_addresses(text: str) -> str:
    """``text`` with every email address replaced (an SMTP reply names the recipient)."""
    return _ADDRESS_IN_TEXT.sub("<address>", text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean_header_text(value: str, *, limit: int = 300) -> str:
    """A value safe for one header line: CR, LF and other control characters collapse to a space.

    Names and subjects come from users; without this a name like ``"Eve\\r\\nBcc: x@y"`` would add a header.
    """
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


# -- signed links ----------------------------------------------------------------


class BadToken(Exception):
    """A link token that is forged, malformed, for another purpose or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def sign_token(secret: str, purpose: str, subject: str, *, expires: datetime | None = None, extra: str = "") -> str:
    """An HMAC-SHA256-signed token naming ``purpose`` and ``subject`` (and an expiry)."""
    exp = str(int(expires.timestamp())) if expires else "0"
    body = "|".join([purpose, subject, exp, extra]).encode()
    mac = _keyed(secret).copy()  # the key's HMAC state, prepared once (a campaign signs two links a mail)
    mac.update(body)
    return f"{_b64(body)}.{_b64(mac.digest()[:18])}"


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    purpose: str
    subject: str
    extra: str


def verify_token(secret: str, token: str, purpose: str, *, now: datetime) -> TokenClaims:
    """Check signature, purpose and expiry; :class:`BadToken` otherwise."""
    try:
        body_b64, sig_b64 = token.split(".", 1)
        body = _unb64(body_b64)
        sig = _unb64(sig_b64)
        got_purpose, subject, exp, extra = body.decode().split("|", 3)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadToken("the link is malformed") from exc
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:18]
    if not hmac.compare_digest(sig, expected):
        raise BadToken("the link's signature is not valid")
    if got_purpose != purpose:
        raise BadToken("the link is not meant for this page")
    if exp != "0" and int(exp) < int(now.timestamp()):
        raise BadToken("the link has expired")
    return TokenClaims(purpose=got_purpose, subject=subject, extra=extra)


# -- rates ---------------------------------------------------------------------


def retry_after(hit_times: list[datetime], *, now: datetime, window: timedelta, limit: int) -> int | None:
    """Seconds to wait when ``limit`` hits already fell within ``window``, else ``None``."""
    recent = sorted(t for t in hit_times if t > now - window)
    if len(recent) < limit:
        return None
    oldest_that_counts = recent[len(recent) - limit]
    return max(1, int((oldest_that_counts + window - now).total_seconds()) + 1)


class TokenBucket:
    """A token bucket (``rate`` tokens per second, at most ``burst``); the clock is passed in."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token; returns how long to wait before using it (0 when available now)."""
        if self.rate <= 0:
            return 0.0
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate


# -- bounces -------------------------------------------------------------------


class BounceKind(StrEnum):
    """A bounce is hard (address dead), soft (temporary) or a complaint (marked as spam)."""

    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"


def suppresses(kind: BounceKind, soft_count: int, soft_limit: int) -> bool:
    """Whether a subscriber is suppressed after this bounce (``soft_count`` includes it)."""
    if kind in (BounceKind.HARD, BounceKind.COMPLAINT):
        return True
    return soft_count >= soft_limit


def smtp_failure_kind(code: int | None) -> str:
    """permanent (5xx: a hard bounce, never retried), transient (4xx / no answer: retried)."""
    if code is not None and 500 <= code < 600:
        return "permanent"
    return "transient"
