"""The authorisation matrix: every route × every role × (own / other organisation).

Each service's ``tests/test_authz_matrix.py`` declares one :class:`Case` per route of its app
(method + path template, who may call it, how to fill its path and body) and runs :func:`walk`
against fixtures where two member organisations, A and B, each own records. The walker

- enumerates the routes from the app's own route table, so a route without a case fails
  (:func:`missing_cases`): a new route cannot ship without a rule;
- calls every case as admin, staff, a member of A, a member of B, a partner and an anonymous
  caller, each with a credential the gateway would mint; the object of a case belongs to A,
  so the member of A is "own" and the member of B "other";
- fails on a refusal of an allowed call (401/403/404 or 5xx) and on an allowed refused one;
- fails on a leak: a response to a caller that must not see an organisation's private records
  containing one of that organisation's markers (strings planted only in its private data —
  a contact's address, a turnover, a history reason, a meeting place, a work-package title).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from distretto_dev.testing import identity_headers
from distretto_shared.identity import Principal, Role

CALLERS = ("anonymous", "partner", "member_b", "member_a", "staff", "admin")
"""In call order: the refused callers first, so a refused write that went through shows up."""


def principals(org_a: str, org_b: str) -> dict[str, Principal]:
    """The six callers, the members bound to A and B."""
    return {
        "anonymous": Principal(id="anonymous", role=Role.ANONYMOUS),
        "partner": Principal(id="apikey:matrix-partner", role=Role.PARTNER),
        "member_b": Principal(id="user:matrix-member-b", role=Role.MEMBER, organisation_id=org_b),
        "member_a": Principal(id="user:matrix-member-a", role=Role.MEMBER, organisation_id=org_a),
        "staff": Principal(id="user:matrix-staff", role=Role.STAFF),
        "admin": Principal(id="user:matrix-admin", role=Role.ADMIN),
    }


SEES: dict[str, frozenset[str]] = {
    "anonymous": frozenset(),
    "partner": frozenset(),
    "member_b": frozenset({"B"}),
    "member_a": frozenset({"A"}),
    "staff": frozenset({"*"}),
    "admin": frozenset({"*"}),
}
"""Whose private records each caller may see (``*``: everyone's); markers of the others must never reach it."""

OPERATIONS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Routes with their own protection (probes, the operators' scrape), tested with the identity core."""


@dataclass(frozen=True)
class Access:
    """Who may call a route: the callers allowed; everyone else is refused."""

    name: str
    allowed: frozenset[str]


PUBLIC = Access("public", frozenset(CALLERS))
"""Anyone, anonymous callers included (the district figures, the anonymised opportunities)."""
SIGNED_IN = Access("signed-in", frozenset(CALLERS) - {"anonymous"})
"""Public data behind a login: the register's public fields, projects (CORDIS)."""
MEMBERS = Access("members", frozenset({"member_a", "member_b", "staff", "admin"}))
"""Members and staff; a list answers a member with its own organisation's records only."""
OWN = Access("own", frozenset({"member_a", "staff", "admin"}))
"""A's private records or A's changes: A's members and staff."""
STAFF = Access("staff", frozenset({"staff", "admin"}))
"""The foundation's work: lifecycle decisions, bulk import/export, the newsletter."""

Params = dict[str, Any]
Factory = Callable[[], Awaitable[Params]]


@dataclass
class Case:
    """One route and how to call it."""

    method: str
    path: str
    access: Access
    body: Any = None
    """JSON body, or a callable of the path values returning one per call (unique names, ids …)."""
    params: Params = field(default_factory=dict)
    """Path parameters beyond the shared targets."""
    fresh: Factory | None = None
    """Per call: new path parameters (an object the call consumes, e.g. a contact to erase)."""
    query: Params = field(default_factory=dict)
    """Query parameters; ``{name}`` in a value is filled like the path."""
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    capability: bool = False
    """The request carries a signed token that entitles its bearer to its subject's data (a
    subscriber's preferences link): the answer is the bearer's, so the leak check skips it."""
    same_for_all: frozenset[int] | None = None
    """Instead of role-based access: every caller gets one of these statuses (a signed webhook)."""


@dataclass
class Finding:
    """A call whose answer breaks the matrix."""

    who: str
    method: str
    path: str
    status: int
    problem: str

    def __str__(self) -> str:
        return f"{self.who:9} {self.method:6} {self.path} → {self.status}: {self.problem}"


@dataclass
class Report:
    """What a walk did."""

    calls: int = 0
    allowed: int = 0
    refused: int = 0
    findings: list[Finding] = field(default_factory=list)


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every route of ``app``'s route table, operations aside."""
    found: set[tuple[str, str]] = set()

    def visit(routes: Iterable[Any], prefix: str) -> None:
        for route in routes:
            original = getattr(route, "original_router", None)
            if original is not None:
                context = getattr(route, "include_context", None)
                visit(original.routes, prefix + (getattr(context, "prefix", "") or ""))
                continue
            methods = getattr(route, "methods", None)
            path = getattr(route, "path", None)
            if not methods or path is None or not hasattr(route, "endpoint"):
                continue
            full = prefix + path
            if full in OPERATIONS or full.startswith(("/docs", "/redoc", "/openapi")):
                continue
            for method in methods:
                if method != "HEAD":
                    found.add((method, full))

    visit(app.router.routes, "")
    return found


def missing_cases(app: Any, cases: list[Case]) -> list[str]:
    """Routes of ``app`` no case covers, and cases naming no route (a stale table)."""
    declared = {(c.method, c.path) for c in cases}
    routes = app_routes(app)
    return [f"no rule for {m} {p}" for m, p in sorted(routes - declared)] + [
        f"rule for a route that does not exist: {m} {p}" for m, p in sorted(declared - routes)
    ]


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _fill(template: str, values: Params) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise KeyError(f"{template}: no value for {{{m.group(1)}}}")
        return str(values[m.group(1)])

    return _PARAM.sub(one, template)


async def walk(
    client: Any,
    audience: str,
    cases: list[Case],
    targets: Params,
    markers: dict[str, list[str]],
    *,
    org_a: str,
    org_b: str,
) -> Report:
    """Call every case as every caller (the members bound to ``org_a`` and ``org_b``; the case's
    object belongs to A); collect what breaks the matrix."""
    report = Report()
    callers = principals(org_a, org_b)
    for case, who in itertools.product(cases, CALLERS):
        principal = callers[who]
        values = {**targets, **case.params}
        if case.fresh is not None:
            values.update(await case.fresh())
        path = _fill(case.path, values)
        body = case.body(values) if callable(case.body) else case.body
        headers = {**identity_headers(principal, audience), **case.headers}
        query = {k: _fill(v, values) if isinstance(v, str) else v for k, v in case.query.items()}
        kwargs: dict[str, Any] = {"headers": headers, "params": query}
        if case.content is not None:
            kwargs["content"] = case.content
        elif body is not None:
            kwargs["json"] = body
        response = await client.request(case.method, path, **kwargs)
        status = response.status_code
        report.calls += 1
        allowed = who in case.access.allowed

        def finding(problem: str, who: str = who, status: int = status, case: Case = case) -> None:
            report.findings.append(Finding(who, case.method, case.path, status, problem))

        if status >= 500:
            finding(f"server error: {response.text[:200]}")
        elif case.same_for_all is not None:
            if status not in case.same_for_all:
                finding(f"expected one of {sorted(case.same_for_all)} for every caller")
        elif allowed:
            report.allowed += 1
            if status in (401, 403, 404):
                finding(f"over-refusal ({case.access.name} route): {response.text[:200]}")
        else:
            report.refused += 1
            expected = {401} if who == "anonymous" else {403, 404}
            if status not in expected:
                finding(f"not refused (expected {sorted(expected)}; {case.access.name} route): {response.text[:200]}")
        text = "" if case.capability else response.text
        for org, planted in markers.items():
            if org in SEES[who] or "*" in SEES[who]:
                continue
            for marker in planted:
                if marker in text:
                    finding(f"LEAK of {org}'s private data ({marker!r})")
    return report


def summary(report: Report) -> str:
    """One line, and the findings below it."""
    head = f"{report.calls} calls: {report.allowed} allowed, {report.refused} refused, {len(report.findings)} findings"
    return "\n".join([head, *map(str, report.findings)])


def assert_covered(app: Any, cases: list[Case]) -> None:
    """Fail unless ``cases`` hold exactly one rule per route of ``app`` (:func:`missing_cases`)."""
    missing = missing_cases(app, cases)
    assert not missing, "\n".join(missing)


async def check(
    client: Any,
    audience: str,
    cases: list[Case],
    targets: Params,
    markers: dict[str, list[str]],
    *,
    org_a: str,
    org_b: str,
) -> Report:
    """:func:`walk`, then fail on any finding, or unless every case was called by every caller and
    every allowed call counted (a case with ``same_for_all`` has no allowed callers)."""
    report = await walk(client, audience, cases, targets, markers, org_a=org_a, org_b=org_b)
    assert not report.findings, summary(report)
    assert report.calls == len(CALLERS) * len(cases), summary(report)
    assert report.allowed == sum(len(c.access.allowed) for c in cases if c.same_for_all is None), summary(report)
    return report


async def ok(response: Any, status: int = 200) -> Any:
    """The JSON body of a response that must have ``status`` (setting up a matrix's records)."""
    assert response.status_code == status, response.text
    return response.json()
