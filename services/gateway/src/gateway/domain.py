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
    OPERATOR = "operator"
    """Watches the dashboards: metrics, readiness, dead letters; no personal data."""


EVERYONE: frozenset[Role] = frozenset(Role)
"""Every authenticated caller (the routes about one's own account)."""
ALL_ROLES: frozenset[Role] = frozenset(Role) - {Role.OPERATOR}
"""Every role that uses the foundation's data (operators watch the platform, not the data)."""
STAFF_UP: frozenset[Role] = frozenset({Role.ADMIN, Role.STAFF})
ADMIN_ONLY: frozenset[Role] = frozenset({Role.ADMIN})
MEMBERS: frozenset[Role] = frozenset({Role.ADMIN, Role.STAFF, Role.MEMBER})
OPERATORS: frozenset[Role] = frozenset({Role.ADMIN, Role.OPERATOR})
"""Metrics, readiness details and dead letters: the people who run the platform."""
PROBES: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics"})
"""The gateway's own operational routes: never rate-limited together with anonymous traffic."""
PUBLIC: None = None
"""``roles=PUBLIC``: anyone, also without credentials."""

ANY_METHOD = "*"
SERVICES: tuple[str, ...] = ("membership", "projects", "newsletter", "matchmaking", "partners")
GATEWAY = "gateway"
"""The upstream label of the gateway's own routes."""

# --- the console: the web pages, served at every path the gateway and the API do not own.
CONSOLE = "console"
"""The upstream label of the console's pages."""
CONSOLE_PATTERN = "/{console_path:path}"
_GATEWAY_OWN = ("/api/", "/auth/", "/docs/")
_GATEWAY_EXACT = frozenset({"/api", "/auth", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})


def is_console_path(path: str) -> bool:
    """True for a path the console answers: anything but ``/api/…``, ``/auth/…`` and the gateway's own routes."""
    return path not in _GATEWAY_EXACT and not path.startswith(_GATEWAY_OWN)


# ---

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
    upstream: str = field(init=False, repr=False, compare=False)
    """The service the rule's paths go to (``gateway`` for the gateway's own routes)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_pattern(self.pattern))
        parts = self.pattern.split("/")
        upstream = parts[2] if len(parts) > 2 and parts[1] == "api" and parts[2] in SERVICES else GATEWAY
        if self.pattern == CONSOLE_PATTERN:
            upstream = CONSOLE
        object.__setattr__(self, "upstream", upstream)

    @property
    def public(self) -> bool:
        """True when no credentials are needed."""
        return self.roles is None

    def matches(self, method: str, path: str) -> bool:
        """True when this rule covers the request."""
        if self.upstream == CONSOLE and not is_console_path(path):
            return False
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
    _r("GET", "/metrics", OPERATORS, "Prometheus scrape (operators, or the configured scrape addresses)"),
    _r("GET", "/openapi.json", PUBLIC, "the aggregated API description"),
    _r("GET", "/docs", PUBLIC, "Swagger UI"),
    _r("GET", "/docs/static/{asset}", PUBLIC, "Swagger UI's files, served by the gateway itself"),
    _r("POST", "/auth/token", PUBLIC, "log in"),
    _r("POST", "/auth/refresh", EVERYONE, "a fresh token while the session is current"),
    _r("GET", "/auth/me", EVERYONE, "who am I"),
    _r("POST", "/auth/password", EVERYONE, "change my own password"),
    _r("GET,POST", "/auth/users", ADMIN_ONLY, "user accounts"),
    _r("GET,PATCH", "/auth/users/{user_id}", ADMIN_ONLY, "one user account"),
    _r("GET,POST", "/auth/api-keys", ADMIN_ONLY, "partner API keys"),
    _r("DELETE", "/auth/api-keys/{key_id}", ADMIN_ONLY, "revoke an API key"),
    # --- membership (services/membership/src/membership/api.py)
    # The district's aggregate figures are public; the register is read by every role. Members
    # reach the routes of an organisation's private records and their own changes: the service
    # lets a member through for its own organisation only (object-level rule next to the query).
    # Lifecycle decisions, renewals (payments), fee plans, import and export stay staff work.
    _r("GET", "/api/membership/figures", PUBLIC, "the district's aggregate figures"),
    _r("GET", "/api/membership/organisations", ALL_ROLES, "the register"),
    _r("POST", "/api/membership/organisations", STAFF_UP, "register an application"),
    _r("GET", "/api/membership/organisations/export", STAFF_UP, "bulk export of the register"),
    _r("POST", "/api/membership/organisations/import", STAFF_UP, "bulk import into the register"),
    _r("GET", "/api/membership/organisations/{organisation_id}", ALL_ROLES, "one organisation"),
    _r("PATCH", "/api/membership/organisations/{organisation_id}", MEMBERS, "change an organisation (own)"),
    _r("GET", "/api/membership/organisations/{organisation_id}/figures", MEMBERS, "an organisation's yearly figures"),
    _r("PUT", "/api/membership/organisations/{organisation_id}/figures/{year}", MEMBERS, "record figures (own)"),
    _r("POST", "/api/membership/organisations/{organisation_id}/approve", STAFF_UP, "approve an application"),
    _r("POST", "/api/membership/organisations/{organisation_id}/reject", STAFF_UP, "reject an application"),
    _r("POST", "/api/membership/organisations/{organisation_id}/suspend", STAFF_UP, "suspend a member"),
    _r("POST", "/api/membership/organisations/{organisation_id}/reinstate", STAFF_UP, "reinstate a member"),
    _r("POST", "/api/membership/organisations/{organisation_id}/lapse", STAFF_UP, "lapse a member (unpaid)"),
    _r("POST", "/api/membership/organisations/{organisation_id}/leave", MEMBERS, "a member leaves (own)"),
    _r("GET", "/api/membership/organisations/{organisation_id}/renewals", MEMBERS, "membership renewals"),
    _r("POST", "/api/membership/organisations/{organisation_id}/renewals", STAFF_UP, "renew a membership"),
    _r("GET", "/api/membership/organisations/{organisation_id}/history", MEMBERS, "status history"),
    _r("GET", "/api/membership/fee-plans", MEMBERS, "fee plans"),
    _r("POST", "/api/membership/fee-plans", STAFF_UP, "add a fee plan"),
    _r("GET,POST", "/api/membership/organisations/{organisation_id}/contacts", MEMBERS, "personal data (own)"),
    _r("GET", "/api/membership/contacts", MEMBERS, "personal data (a member: its own organisation's)"),
    _r("GET,PATCH", "/api/membership/contacts/{contact_id}", MEMBERS, "personal data (own)"),
    _r("GET", "/api/membership/contacts/{contact_id}/personal-data", STAFF_UP, "name, address, phone (staff)"),
    _r("GET", "/api/membership/contacts/{contact_id}/export", MEMBERS, "a contact's data export (GDPR; own)"),
    _r("POST", "/api/membership/contacts/{contact_id}/erase", MEMBERS, "erase a contact (GDPR; own)"),
    _r("GET", "/api/membership/metrics", OPERATORS | STAFF_UP, "the service's metrics (operators)"),
    _r("*", "/api/membership/{rest:path}", STAFF_UP, "anything else: the service's health, metrics, OpenAPI"),
    # --- projects (services/projects/src/projects/api.py)
    # Projects and consortia are public EU data (CORDIS): every role reads them; the work plan
    # (work packages, deliverables, milestones, reporting periods) is for members; staff keep it all.
    _r("GET", "/api/projects/projects", ALL_ROLES, "projects"),
    _r("POST", "/api/projects/projects", STAFF_UP, "register a project"),
    _r("GET", "/api/projects/projects/{project_id}", ALL_ROLES, "one project"),
    _r("PATCH", "/api/projects/projects/{project_id}", STAFF_UP, "change a project"),
    _r("GET", "/api/projects/projects/{project_id}/participants", ALL_ROLES, "a project's consortium"),
    _r("POST", "/api/projects/projects/{project_id}/participants", STAFF_UP, "add a participant"),
    _r("GET", "/api/projects/projects/{project_id}/participants/{participant_id}", ALL_ROLES, "one participant"),
    _r(
        "PATCH,DELETE",
        "/api/projects/projects/{project_id}/participants/{participant_id}",
        STAFF_UP,
        "change or remove a participant",
    ),
    _r("GET", "/api/projects/organisations", ALL_ROLES, "member organisations known to projects"),
    _r("GET", "/api/projects/projects/{project_id}/work-packages", MEMBERS, "a project's work packages"),
    _r("POST", "/api/projects/projects/{project_id}/work-packages", STAFF_UP, "add a work package"),
    _r("GET", "/api/projects/projects/{project_id}/work-packages/{wp_id}", MEMBERS, "one work package"),
    _r("PATCH,DELETE", "/api/projects/projects/{project_id}/work-packages/{wp_id}", STAFF_UP, "keep a work package"),
    _r("GET", "/api/projects/projects/{project_id}/deliverables", MEMBERS, "a project's deliverables"),
    _r("POST", "/api/projects/projects/{project_id}/deliverables", STAFF_UP, "add a deliverable"),
    _r("GET", "/api/projects/deliverables", MEMBERS, "deliverables of every project"),
    _r("GET", "/api/projects/projects/{project_id}/deliverables/{deliverable_id}", MEMBERS, "one deliverable"),
    _r(
        "PATCH,DELETE",
        "/api/projects/projects/{project_id}/deliverables/{deliverable_id}",
        STAFF_UP,
        "keep a deliverable",
    ),
    _r(
        "POST",
        "/api/projects/projects/{project_id}/deliverables/{deliverable_id}/submit",
        STAFF_UP,
        "a deliverable is submitted",
    ),
    _r(
        "POST",
        "/api/projects/projects/{project_id}/deliverables/{deliverable_id}/accept",
        STAFF_UP,
        "a deliverable is accepted",
    ),
    _r("GET", "/api/projects/projects/{project_id}/milestones", MEMBERS, "a project's milestones"),
    _r("POST", "/api/projects/projects/{project_id}/milestones", STAFF_UP, "add a milestone"),
    _r("GET", "/api/projects/projects/{project_id}/milestones/{milestone_id}", MEMBERS, "one milestone"),
    _r("PATCH,DELETE", "/api/projects/projects/{project_id}/milestones/{milestone_id}", STAFF_UP, "keep a milestone"),
    _r("POST", "/api/projects/projects/{project_id}/milestones/{milestone_id}/reach", STAFF_UP, "a milestone reached"),
    _r("GET", "/api/projects/projects/{project_id}/reporting-periods", MEMBERS, "a project's reporting periods"),
    _r("POST", "/api/projects/projects/{project_id}/reporting-periods", STAFF_UP, "add a reporting period"),
    _r(
        "PATCH,DELETE",
        "/api/projects/projects/{project_id}/reporting-periods/{period_id}",
        STAFF_UP,
        "keep a reporting period",
    ),
    _r("POST", "/api/projects/imports/cordis", STAFF_UP, "CORDIS import"),
    _r("POST", "/api/projects/deadlines/scan", STAFF_UP, "run the deadline scan"),
    _r("GET", "/api/projects/portfolio", ALL_ROLES, "portfolio figures"),
    _r("GET", "/api/projects/metrics", OPERATORS | STAFF_UP, "the service's metrics (operators)"),
    _r("*", "/api/projects/{rest:path}", STAFF_UP, "anything else: the service's health, metrics, OpenAPI"),
    # --- newsletter (services/newsletter/src/newsletter/api.py; its mail catcher is not proxied)
    # A subscriber's own pages are public (their links carry signed tokens); the bounce webhook
    # is public too: the mail provider's Standard Webhooks signature, checked by the newsletter,
    # is its authentication; the rest is staff work.
    _r("POST", "/api/newsletter/signup", PUBLIC, "sign-up (double opt-in)"),
    _r("GET,POST", "/api/newsletter/confirm", PUBLIC, "confirmation page and confirmation"),
    _r("GET,POST", "/api/newsletter/preferences", PUBLIC, "preferences page and saving them"),
    _r("GET,POST", "/api/newsletter/unsubscribe/{token}", PUBLIC, "unsubscribe page and RFC 8058 one-click POST"),
    _r(
        "POST", "/api/newsletter/bounces", PUBLIC, "bounce webhook (the provider's signature is checked by the service)"
    ),
    _r("GET", "/api/newsletter/bounces", STAFF_UP, "bounces received"),
    _r("GET,POST", "/api/newsletter/lists", STAFF_UP, "mailing lists"),
    _r("GET", "/api/newsletter/lists/{list_id}", STAFF_UP, "one mailing list"),
    _r("GET,POST", "/api/newsletter/subscribers", STAFF_UP, "subscribers (personal data)"),
    _r("GET,PATCH,DELETE", "/api/newsletter/subscribers/{subscriber_id}", STAFF_UP, "one subscriber; erase (GDPR)"),
    _r("GET", "/api/newsletter/subscribers/{subscriber_id}/export", STAFF_UP, "everything held about one (GDPR)"),
    _r("GET,POST", "/api/newsletter/templates", STAFF_UP, "templates"),
    _r("GET,PATCH", "/api/newsletter/templates/{template_id}", STAFF_UP, "one template"),
    _r("GET,POST", "/api/newsletter/campaigns", STAFF_UP, "campaigns"),
    _r("POST", "/api/newsletter/campaigns/recipients", STAFF_UP, "how many people a choice of lists would reach"),
    _r("GET,PATCH", "/api/newsletter/campaigns/{campaign_id}", STAFF_UP, "one campaign"),
    _r("POST", "/api/newsletter/campaigns/{campaign_id}/schedule", STAFF_UP, "schedule a campaign"),
    _r("POST", "/api/newsletter/campaigns/{campaign_id}/start", STAFF_UP, "start a campaign"),
    _r("POST", "/api/newsletter/campaigns/{campaign_id}/pause", STAFF_UP, "pause a campaign"),
    _r("POST", "/api/newsletter/campaigns/{campaign_id}/resume", STAFF_UP, "resume a campaign"),
    _r("POST", "/api/newsletter/campaigns/{campaign_id}/cancel", STAFF_UP, "cancel a campaign"),
    _r("POST", "/api/newsletter/campaigns/{campaign_id}/unschedule", STAFF_UP, "unschedule a campaign"),
    _r("POST", "/api/newsletter/campaigns/{campaign_id}/test", STAFF_UP, "send test mails"),
    _r("GET", "/api/newsletter/campaigns/{campaign_id}/deliveries", STAFF_UP, "a campaign's deliveries"),
    _r("GET", "/api/newsletter/campaigns/{campaign_id}/recipients", STAFF_UP, "how many people a campaign goes to"),
    _r("GET", "/api/newsletter/transactional-mails", STAFF_UP, "confirmation and welcome mails counted"),
    _r("POST", "/api/newsletter/digest", STAFF_UP, "build the digest now"),
    _r("GET", "/api/newsletter/metrics", OPERATORS | STAFF_UP, "the service's metrics (operators)"),
    _r("GET,POST", "/api/newsletter/segments", STAFF_UP, "segments (saved audience rules)"),
    _r("POST", "/api/newsletter/segments/preview", STAFF_UP, "an unsaved rule's count and members"),
    _r("GET,PATCH,DELETE", "/api/newsletter/segments/{segment}", STAFF_UP, "one segment"),
    _r("GET", "/api/newsletter/segments/{segment}/count", STAFF_UP, "a segment's live count"),
    _r("GET", "/api/newsletter/segments/{segment}/sample", STAFF_UP, "a segment's members, paginated"),
    _r("*", "/api/newsletter/{rest:path}", STAFF_UP, "anything else: the service's health, metrics, OpenAPI"),
    # --- matchmaking (services/matchmaking/src/matchmaking/api.py)
    # Anonymised opportunities are public. Members reach opportunities, rankings and matches,
    # writes included: the service lets a member act only for its own organisation (its
    # opportunities, its side of a match) and shows a match only to its two sides.
    _r("GET", "/api/matchmaking/public/opportunities", PUBLIC, "published opportunities, anonymised"),
    _r("GET", "/api/matchmaking/public/opportunities/{opportunity_id}", PUBLIC, "one, anonymised"),
    _r("GET", "/api/matchmaking/opportunities", MEMBERS, "opportunities"),
    _r("POST", "/api/matchmaking/opportunities", MEMBERS, "publish an opportunity (own)"),
    _r("GET", "/api/matchmaking/opportunities/{opportunity_id}", MEMBERS, "one opportunity"),
    _r("PATCH", "/api/matchmaking/opportunities/{opportunity_id}", MEMBERS, "change an opportunity (own)"),
    _r("POST", "/api/matchmaking/opportunities/{opportunity_id}/renew", MEMBERS, "extend one (own)"),
    _r("POST", "/api/matchmaking/opportunities/{opportunity_id}/withdraw", MEMBERS, "withdraw one (own)"),
    _r("GET", "/api/matchmaking/opportunities/{opportunity_id}/counterparts", MEMBERS, "ranked counterparts"),
    _r("POST", "/api/matchmaking/opportunities/{opportunity_id}/matches", MEMBERS, "call for matches (own)"),
    _r("GET", "/api/matchmaking/organisations", MEMBERS, "competence profiles"),
    _r("GET", "/api/matchmaking/organisations/{organisation_id}", MEMBERS, "one competence profile"),
    _r(
        "GET",
        "/api/matchmaking/organisations/{organisation_id}/opportunities",
        MEMBERS,
        "opportunities that fit an organisation",
    ),
    _r("GET", "/api/matchmaking/matches", MEMBERS, "matches"),
    _r("POST", "/api/matchmaking/matches", MEMBERS, "propose a match (own opportunity)"),
    _r("GET", "/api/matchmaking/matches/{match_id}", MEMBERS, "one match"),
    _r("POST", "/api/matchmaking/matches/{match_id}/accept", MEMBERS, "one side accepts (own side)"),
    _r("POST", "/api/matchmaking/matches/{match_id}/decline", MEMBERS, "one side declines (own side)"),
    _r("POST", "/api/matchmaking/matches/{match_id}/meeting", MEMBERS, "schedule the meeting (a side)"),
    _r("POST", "/api/matchmaking/matches/{match_id}/meeting/held", MEMBERS, "the meeting took place (a side)"),
    _r("POST", "/api/matchmaking/matches/{match_id}/feedback", MEMBERS, "was it useful (own side)"),
    _r("GET", "/api/matchmaking/index", STAFF_UP, "what the ranking index holds"),
    _r("GET", "/api/matchmaking/metrics", OPERATORS | STAFF_UP, "the service's metrics (operators)"),
    _r("*", "/api/matchmaking/{rest:path}", STAFF_UP, "anything else: the service's health, metrics, OpenAPI"),
    # --- partners (services/partners/src/partners/api.py): the public catalogue and its AsyncAPI
    # document are public; the event stream is for partner systems (their API key; the service
    # checks the key belongs to an active partner and filters by its grant); the rest is admin work.
    _r("GET", "/api/partners/catalogue", PUBLIC, "the public event types and their schemas"),
    _r("GET", "/api/partners/asyncapi.json", PUBLIC, "AsyncAPI 3 document of the public topics"),
    _r("GET", "/api/partners/stream", frozenset({Role.PARTNER}), "server-sent events of the granted types"),
    _r("GET,POST", "/api/partners/partners", ADMIN_ONLY, "partner systems"),
    _r("GET,PATCH", "/api/partners/partners/{partner_id}", ADMIN_ONLY, "one partner: grant, API key, active"),
    _r("POST,DELETE", "/api/partners/partners/{partner_id}/kafka", ADMIN_ONLY, "Kafka user and ACLs (password once)"),
    _r("GET,POST", "/api/partners/partners/{partner_id}/webhooks", ADMIN_ONLY, "webhook endpoints (secret shown once)"),
    _r("GET", "/api/partners/webhooks/{endpoint_id}", ADMIN_ONLY, "one webhook endpoint"),
    _r("POST", "/api/partners/webhooks/{endpoint_id}/rotate-secret", ADMIN_ONLY, "new signing secret"),
    _r("POST", "/api/partners/webhooks/{endpoint_id}/enable", ADMIN_ONLY, "enable an endpoint"),
    _r("POST", "/api/partners/webhooks/{endpoint_id}/disable", ADMIN_ONLY, "disable an endpoint"),
    _r("POST", "/api/partners/webhooks/{endpoint_id}/replay", ADMIN_ONLY, "send again: one event or all since"),
    _r("GET", "/api/partners/webhooks/{endpoint_id}/messages", ADMIN_ONLY, "an endpoint's messages"),
    _r("GET", "/api/partners/webhooks/{endpoint_id}/attempts", ADMIN_ONLY, "an endpoint's delivery log"),
    _r("*", "/api/partners/{rest:path}", ADMIN_ONLY, "anything else: the service's health, metrics, OpenAPI"),
    # --- the console (services/console): its pages are public here because it does its own login
    # (a session cookie holding the user's gateway token; every API call it makes comes back
    # through this table with that token). The middleware sends it only is_console_path() paths.
    _r("GET,POST", CONSOLE_PATTERN, PUBLIC, "the console's pages (it authenticates its users itself)"),
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
        if found is not None and found.upstream == CONSOLE and not is_console_path(path):
            found = None  # the console's catch-all never covers the API's or the gateway's own paths
        if len(self._cache) < 10_000:  # raw paths carry ids: bound the memo (the regex is quick anyway)
            self._cache[key] = found
        return found

    def allowed(self, path: str) -> list[str]:
        """The methods some rule covers at ``path`` (with OPTIONS), or ``[]`` when no rule knows it."""
        methods = [m for m in ("DELETE", "GET", "PATCH", "POST", "PUT") if self.match(m, path) is not None]
        return sorted([*methods, "OPTIONS"]) if methods else []


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
