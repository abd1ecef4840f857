"""Pure rules of the gateway: roles, the route-policy table, token buckets.

No I/O and no framework here. The policy table is the single place saying who
may call what; the middleware, the metrics labels, the aggregated OpenAPI
document and the authorisation-matrix test all read it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """What a caller is to the foundation."""

    ADMIN = "admin"
    """Runs the platform: users, API keys, everything else."""
    STAFF = "staff"
    """The foundation's staff: keep the register, projects, campaigns, matches."""
    MEMBER = "member"
    """A person of a member organisation."""
    PARTNER = "partner"
    """A partner system or person: public data and the partner-facing reads."""


ALL_ROLES: frozenset[Role] = frozenset(Role)
STAFF_UP: frozenset[Role] = frozenset({Role.ADMIN, Role.STAFF})
ADMIN_ONLY: frozenset[Role] = frozenset({Role.ADMIN})
MEMBERS: frozenset[Role] = frozenset({Role.ADMIN, Role.STAFF, Role.MEMBER})
PUBLIC: None = None
"""``roles=PUBLIC``: anyone, also without credentials."""

ANY_METHOD = "*"
SERVICES: tuple[str, ...] = ("membership", "projects", "newsletter", "matchmaking")
GATEWAY = "gateway"
"""The upstream label of the gateway's own routes."""

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


def pattern_source(pattern: str, named: bool = True) -> str:
    """The regex source of a pattern (unanchored); ``named=False`` uses non-capturing groups."""
    out = []
    pos = 0
    for m in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        group = f"?P<{m.group(1)}>" if named else "?:"
        out.append(f"({group}.*)" if m.group(2) else f"({group}[^/]+)")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return "".join(out)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``/api/x/{id}/{rest:path}`` → a regex: ``{name}`` is one segment, ``{name:path}`` the rest (maybe empty)."""
    return re.compile("^" + pattern_source(pattern) + "$")


@dataclass(frozen=True)
class Rule:
    """Who may call ``methods`` on paths matching ``pattern``."""

    methods: tuple[str, ...]
    pattern: str
    roles: frozenset[Role] | None
    """Allowed roles; ``None`` (``PUBLIC``) lets anyone in, also anonymous callers."""
    why: str = ""
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_pattern(self.pattern))

    @property
    def public(self) -> bool:
        """True when no credentials are needed."""
        return self.roles is None

    @property
    def upstream(self) -> str:
        """The service the rule's paths go to (``gateway`` for the gateway's own routes)."""
        parts = self.pattern.split("/")
        if len(parts) > 2 and parts[1] == "api" and parts[2] in SERVICES:
            return parts[2]
        return GATEWAY

    def matches(self, method: str, path: str) -> bool:
        """True when this rule covers the request."""
        return (ANY_METHOD in self.methods or method in self.methods) and self.regex.match(path) is not None

    def allows(self, role: Role | None) -> bool:
        """True when ``role`` (``None`` = anonymous) may call the rule's routes."""
        if self.roles is None:
            return True
        return role is not None and role in self.roles

    def example_path(self) -> str:
        """A concrete path this rule's pattern matches (parameters filled with sample values)."""
        return _PARAM.sub(lambda m: "sample/path" if m.group(2) else f"sample-{m.group(1)}", self.pattern)


def _r(methods: str, pattern: str, roles: frozenset[Role] | None, why: str = "") -> Rule:
    return Rule(tuple(methods.split(",")), pattern, roles, why)


# The route-policy table. Order matters: the first rule that matches decides.
# Anything no rule matches is denied (401 anonymous, 403 authenticated).
POLICY: tuple[Rule, ...] = (
    # --- the gateway's own routes
    _r("GET", "/healthz", PUBLIC, "liveness"),
    _r("GET", "/readyz", PUBLIC, "readiness of the gateway and every service"),
    _r("GET", "/metrics", PUBLIC, "Prometheus scrape (keep the gateway's /metrics on the internal network)"),
    _r("GET", "/openapi.json", PUBLIC, "the aggregated API description"),
    _r("GET", "/docs", PUBLIC, "Swagger UI"),
    _r("POST", "/auth/token", PUBLIC, "log in"),
    _r("GET", "/auth/me", ALL_ROLES, "who am I"),
    _r("POST", "/auth/password", ALL_ROLES, "change my own password"),
    _r("GET,POST", "/auth/users", ADMIN_ONLY, "user accounts"),
    _r("GET,PATCH", "/auth/users/{user_id}", ADMIN_ONLY, "one user account"),
    _r("GET,POST", "/auth/api-keys", ADMIN_ONLY, "partner API keys"),
    _r("DELETE", "/auth/api-keys/{key_id}", ADMIN_ONLY, "revoke an API key"),
    # --- membership: the district figures are public; contacts are personal data
    _r("GET", "/api/membership/figures", PUBLIC, "the district's aggregate figures"),
    _r("GET", "/api/membership/organisations/{organisation_id}/contacts{rest:path}", STAFF_UP, "personal data"),
    _r("GET", "/api/membership/contacts{rest:path}", STAFF_UP, "personal data"),
    _r("GET", "/api/membership/organisations/export{rest:path}", STAFF_UP, "bulk export of the register"),
    _r("GET", "/api/membership/organisations", ALL_ROLES, "the register"),
    _r("GET", "/api/membership/organisations/{organisation_id}", ALL_ROLES, "one organisation"),
    _r("GET", "/api/membership/organisations/{organisation_id}/figures", ALL_ROLES, "an organisation's yearly figures"),
    _r("GET", "/api/membership/{rest:path}", MEMBERS, "history, renewals, fee plans"),
    _r("POST", "/api/membership/organisations", MEMBERS, "an organisation applies"),
    _r("*", "/api/membership/{rest:path}", STAFF_UP, "keeping the register: approve, suspend, import …"),
    # --- projects: read by everyone signed in, written by staff
    _r("GET", "/api/projects/{rest:path}", ALL_ROLES, "projects, consortia, deliverables, portfolio figures"),
    _r("*", "/api/projects/{rest:path}", STAFF_UP, "keeping projects, CORDIS import, deadline scan"),
    # --- newsletter: sign-up and the subscriber's own links are public (the links carry signed tokens)
    _r("GET,POST", "/api/newsletter/public/{rest:path}", PUBLIC, "the subscriber-facing pages"),
    _r("POST", "/api/newsletter/subscribe", PUBLIC, "sign-up (double opt-in)"),
    _r("POST", "/api/newsletter/subscriptions", PUBLIC, "sign-up (double opt-in)"),
    _r("GET,POST", "/api/newsletter/confirm{rest:path}", PUBLIC, "confirmation link"),
    _r("GET,POST", "/api/newsletter/unsubscribe{rest:path}", PUBLIC, "unsubscribe link and RFC 8058 one-click POST"),
    _r("POST", "/api/newsletter/one-click{rest:path}", PUBLIC, "RFC 8058 one-click unsubscribe"),
    _r("GET,POST,PUT,PATCH", "/api/newsletter/preferences{rest:path}", PUBLIC, "preferences page"),
    _r("POST", "/api/newsletter/bounces{rest:path}", STAFF_UP | {Role.PARTNER}, "bounce webhook (a mail provider)"),
    _r("*", "/api/newsletter/{rest:path}", STAFF_UP, "lists, templates, campaigns, subscribers"),
    # --- matchmaking: anonymised opportunities are public; members publish and answer matches
    _r("GET", "/api/matchmaking/public/{rest:path}", PUBLIC, "anonymised opportunities"),
    _r("GET", "/api/matchmaking/{rest:path}", MEMBERS, "opportunities, profiles, rankings, matches"),
    _r("POST", "/api/matchmaking/opportunities", MEMBERS, "publish an opportunity"),
    _r("PATCH", "/api/matchmaking/opportunities/{opportunity_id}", MEMBERS, "change an opportunity"),
    _r("POST", "/api/matchmaking/opportunities/{opportunity_id}/{action}", MEMBERS, "renew, call for matches"),
    _r("POST", "/api/matchmaking/matches/{match_id}/{rest:path}", MEMBERS, "accept, decline, meeting, feedback"),
    _r("*", "/api/matchmaking/{rest:path}", STAFF_UP, "proposing matches, curating"),
)


class Policy:
    """The policy table, matched in order.

    Per method, the rules that apply are compiled into one regex of alternatives in table
    order (``^(?:(?P<r0>…)|(?P<r1>…)|…)$``): the engine tries them in order, so the group
    that matched names the first rule that covers the path, in one ``match`` call.
    """

    def __init__(self, rules: tuple[Rule, ...] = POLICY) -> None:
        self.rules = rules
        self._by_method: dict[str, tuple[re.Pattern[str], tuple[Rule, ...]]] = {}
        self._cache: dict[tuple[str, str], Rule | None] = {}

    def _compiled(self, method: str) -> tuple[re.Pattern[str], tuple[Rule, ...]]:
        found = self._by_method.get(method)
        if found is None:
            rules = tuple(r for r in self.rules if ANY_METHOD in r.methods or method in r.methods)
            alternatives = "|".join(f"(?P<r{i}>{pattern_source(r.pattern, named=False)})" for i, r in enumerate(rules))
            regex = re.compile(f"^(?:{alternatives})$" if rules else "(?!)")
            found = (regex, rules)
            if len(self._by_method) < 64:  # methods come from the parser's fixed set; bound it anyway
                self._by_method[method] = found
        return found

    def match(self, method: str, path: str) -> Rule | None:
        """The first rule covering the request, or ``None`` (denied)."""
        key = (method, path)
        try:
            return self._cache[key]
        except KeyError:
            pass
        regex, rules = self._compiled(method)
        m = regex.match(path)
        found = rules[int(m.lastgroup[1:])] if m is not None and m.lastgroup else None
        if len(self._cache) < 10_000:  # raw paths carry ids: bound the memo (the regex is quick anyway)
            self._cache[key] = found
        return found


@dataclass(frozen=True)
class Decision:
    """What the gateway does with a request: ``status`` 0 means let it through."""

    status: int
    message: str = ""


ALLOWED = Decision(0)


def decide(rule: Rule | None, role: Role | None, method: str, path: str) -> Decision:
    """Allowed, 401 (anonymous and credentials needed) or 403 (authenticated, role not allowed)."""
    if rule is not None and rule.allows(role):
        return ALLOWED
    if role is None:
        return Decision(
            401, "Authentication required: send 'Authorization: Bearer <token>' (POST /auth/token) or 'X-API-Key'"
        )
    if rule is None:
        return Decision(403, f"No route {method} {path} is open to role '{role}'")
    return Decision(403, f"Role '{role}' may not call {method} {rule.pattern}")


def split_upstream(path: str) -> tuple[str, str] | None:
    """``/api/<service>/rest`` → (service, ``/rest``); ``None`` for anything else."""
    if not path.startswith("/api/"):
        return None
    name, sep, rest = path[5:].partition("/")
    if name not in SERVICES:
        return None
    return name, "/" + rest if sep else "/"


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; each request takes one."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token: 0 when granted, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        """True when the bucket would be full now (an idle caller: safe to forget)."""
        return self.tokens + (now - self.updated) * self.rate >= self.capacity


class RateLimiter:
    """Token buckets keyed by caller, in memory, with idle buckets forgotten past ``max_keys``."""

    def __init__(self, per_minute: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(1, burst))
        self.max_keys = max_keys
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float) -> float:
        """0 when the call may go ahead, else seconds to wait."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self._forget_idle(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.capacity, now)
        return bucket.take(now)

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, b in self.buckets.items() if b.full(now)]:
            del self.buckets[key]
        if len(self.buckets) >= self.max_keys:  # everyone busy: drop the oldest half
            for key in sorted(self.buckets, key=lambda k: self.buckets[k].updated)[: self.max_keys // 2]:
                del self.buckets[key]


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
