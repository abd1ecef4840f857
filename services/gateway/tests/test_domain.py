"""Pure rules: the policy table, decisions, token buckets, OpenAPI merging."""

from __future__ import annotations

import importlib
import re
import warnings

from gateway.domain import (
    ANY_METHOD,
    POLICY,
    SERVICES,
    Policy,
    RateLimiter,
    Role,
    TokenBucket,
    decide,
    retry_after_header,
    split_upstream,
)
from gateway.openapi import merge

from .conftest import openapi_of

_ROUTE_PARAM = re.compile(r"\{[^}]*\}")


def service_routes() -> dict[str, list[tuple[str, str]]]:
    """``(METHOD, /api/<service>/path)`` of every route each service's routers declare (decorated or generated).

    Imported here, beside the gateway: each service's tables are on its own metadata.
    """
    found: dict[str, list[tuple[str, str]]] = {}
    for service in SERVICES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = importlib.import_module(service + ".app").SPEC
        found[service] = [
            (m, f"/api/{service}{r.path}")
            for router in spec.routers
            for r in router.routes
            for m in sorted(getattr(r, "methods", ()) or ())
        ]
    return found


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def test_every_rule_is_reachable_from_its_example_path() -> None:
    policy = Policy()
    for rule in POLICY:
        methods = METHODS if ANY_METHOD in rule.methods else rule.methods
        winners = [m for m in methods if policy.match(m, rule.example_path()) is rule]
        assert winners, f"{rule.methods} {rule.pattern} is shadowed by an earlier rule"


def test_patterns_match_segments_and_rests() -> None:
    policy = Policy()
    figures = policy.match("GET", "/api/membership/figures")
    assert figures is not None and figures.public
    contacts = policy.match("GET", "/api/membership/organisations/o1/contacts")
    assert contacts is not None and contacts.roles == frozenset({Role.ADMIN, Role.STAFF, Role.MEMBER})
    export = policy.match("GET", "/api/membership/organisations/export")
    assert export is not None and export.roles == frozenset({Role.ADMIN, Role.STAFF})
    register = policy.match("GET", "/api/membership/organisations/o1")
    assert register is not None and Role.PARTNER in (register.roles or ())
    # a one-segment parameter does not swallow slashes
    assert policy.match("PATCH", "/auth/users/a/b") is None
    assert policy.match("GET", "/api/unknown/x") is None
    # any other path is a console page (the console answers 404 for what it does not know)
    console = policy.match("GET", "/etc/passwd")
    assert console is not None and console.upstream == "console" and console.public
    assert policy.match("DELETE", "/etc/passwd") is None
    assert policy.match("DELETE", "/auth/token") is None
    # what the gateway answers for a path no rule covers with the method: 405 with these, or 404 when empty
    assert policy.allowed("/auth/token") == ["OPTIONS", "POST"]
    assert policy.allowed("/auth/users") == ["GET", "OPTIONS", "POST"]
    assert policy.allowed("/api/nowhere") == []
    assert policy.allowed("/etc/passwd") == ["GET", "OPTIONS", "POST"]  # the console answers it
    assert policy.allowed("/api/membership/anything/else") == ["DELETE", "GET", "OPTIONS", "PATCH", "POST", "PUT"]


def test_decide_allows_denies_with_401_or_403() -> None:
    policy = Policy()
    approve = policy.match("POST", "/api/membership/organisations/o1/approve")
    assert decide(approve, Role.STAFF, "POST", "/x").status == 0
    assert decide(approve, Role.MEMBER, "POST", "/x").status == 403
    assert decide(approve, None, "POST", "/x").status == 401
    assert decide(None, Role.ADMIN, "GET", "/nowhere").status == 403
    assert decide(None, None, "GET", "/nowhere").status == 401
    public = policy.match("POST", "/api/newsletter/signup")
    assert decide(public, None, "POST", "/x").status == 0
    assert "member" in decide(approve, Role.MEMBER, "POST", "/x").message


def test_split_upstream_strips_the_prefix() -> None:
    assert split_upstream("/api/projects/projects/1") == ("projects", "/projects/1")
    assert split_upstream("/api/projects") == ("projects", "/")
    assert split_upstream("/api/other/x") is None
    assert split_upstream("/auth/token") is None


def test_token_bucket_empties_and_refills() -> None:
    bucket = TokenBucket(rate=1.0, capacity=2, now=100.0)
    assert bucket.take(100.0) == 0
    assert bucket.take(100.0) == 0
    wait = bucket.take(100.0)
    assert 0.99 <= wait <= 1.0
    assert bucket.take(100.5) > 0
    assert bucket.take(101.1) == 0
    assert retry_after_header(0.2) == "1"
    assert retry_after_header(2.01) == "3"


def test_rate_limiter_keys_are_independent_and_bounded() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, max_keys=10)
    assert limiter.take("a", 0.0) == 0
    assert limiter.take("a", 0.0) > 0
    assert limiter.take("b", 0.0) == 0
    for i in range(50):
        limiter.take(f"k{i}", 1000.0 + i)
    assert len(limiter.buckets) <= 10


def test_merge_prefixes_paths_and_components_and_reports_missing() -> None:
    own = {"openapi": "3.1.0", "info": {"title": "gw"}, "paths": {"/auth/token": {"post": {}}}, "components": {}}
    doc = merge(
        own,
        {"membership": openapi_of("membership"), "projects": openapi_of("projects")},
        {"newsletter": "connection refused"},
        Policy(),
    )
    schemas = doc["components"]["schemas"]
    assert schemas["membership_Organisation"]["description"] == "membership's organisation"
    assert schemas["projects_Organisation"]["description"] == "projects's organisation"
    owner = schemas["projects_Organisation"]["properties"]["owner"]
    assert owner == {"$ref": "#/components/schemas/projects_Owner"}
    post = doc["paths"]["/api/membership/organisations"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/membership_Organisation")
    assert post["operationId"] == "membership_apply"
    assert post["x-distretto-roles"] == ["admin", "staff"]
    assert doc["paths"]["/api/membership/organisations"]["get"]["x-distretto-roles"] == [
        "admin",
        "member",
        "partner",
        "staff",
    ]
    assert doc["paths"]["/api/membership/figures"]["get"]["security"] == []
    assert doc["paths"]["/auth/token"]["post"]["x-distretto-roles"] == ["public"]
    assert {"bearerAuth", "apiKeyAuth"} <= set(doc["components"]["securitySchemes"])
    assert doc["x-distretto-upstreams"]["newsletter"] == {"included": False, "error": "connection refused"}
    assert "newsletter" in doc["info"]["description"]


def test_one_regex_per_method_agrees_with_rule_by_rule_matching() -> None:
    policy = Policy()
    paths = {rule.example_path() for rule in POLICY}
    paths |= {p + "/extra/segments" for p in paths} | {"/", "/api", "/api/projects", "/auth/users/a/b", "/etc/passwd"}
    for method in (*METHODS, "HEAD", "OPTIONS"):
        for path in sorted(paths):
            expected = next((r for r in POLICY if r.matches(method, path)), None)
            assert policy.match(method, path) is expected, (method, path)


def test_every_route_of_every_service_has_its_own_rule() -> None:
    """Each route a service declares is named in the table (not left to the staff-only catch-all)."""
    policy = Policy()
    seen = 0
    for service, routes in service_routes().items():
        assert routes, f"no routes found in {service}'s api.py"
        for method, path in routes:
            rule = policy.match(method, _ROUTE_PARAM.sub("sample", path))
            assert rule is not None, f"{method} {path} is denied to everyone"
            assert _ROUTE_PARAM.sub("{}", rule.pattern) == _ROUTE_PARAM.sub("{}", path), (
                f"{method} {path} falls to {rule.methods} {rule.pattern}: add it to gateway.domain.POLICY"
            )
            seen += 1
    assert seen >= 100


def test_public_routes_are_exactly_the_intended_ones() -> None:
    public = {(m, r.pattern) for r in POLICY if r.public and r.upstream != "gateway" for m in r.methods}
    assert public == {
        ("GET", "/api/membership/figures"),
        ("POST", "/api/newsletter/signup"),
        ("POST", "/api/newsletter/bounces"),
        ("GET", "/api/newsletter/confirm"),
        ("POST", "/api/newsletter/confirm"),
        ("GET", "/api/newsletter/preferences"),
        ("POST", "/api/newsletter/preferences"),
        ("GET", "/api/newsletter/unsubscribe/{token}"),
        ("POST", "/api/newsletter/unsubscribe/{token}"),
        ("GET", "/api/matchmaking/public/opportunities"),
        ("GET", "/api/matchmaking/public/opportunities/{opportunity_id}"),
        ("GET", "/api/partners/catalogue"),
        ("GET", "/api/partners/asyncapi.json"),
        # the console's pages: it logs its users in itself and calls the API with their token
        ("GET", "/{console_path:path}"),
        ("POST", "/{console_path:path}"),
    }
    bounces = Policy().match("POST", "/api/newsletter/bounces")
    # Public at the gateway: the newsletter checks the mail provider's webhook signature itself.
    assert bounces is not None and bounces.public


def test_a_token_newer_than_this_workers_view_of_its_user_is_asked_of_the_database() -> None:
    """Another worker changed the user (session version 3 → 4) and minted a token since this one last
    read it: that token is not refused as ended — only the database can say (``None``) — while a token
    older than what this worker knows is ended at once."""
    from gateway.identify import Authenticator, Sessions
    from gateway.models import Identity

    auth = Authenticator.__new__(Authenticator)
    auth.sessions = Sessions.__new__(Sessions)
    auth.sessions.current = {"u1": (3, True)}

    def token(version: int) -> Identity:
        return Identity(principal="user:u1", role=Role.STAFF, via="token", session_version=version)

    assert auth.session_state(token(3)) is True
    assert auth.session_state(token(4)) is None  # newer than this worker's view: check_session reads it
    assert auth.session_state(token(2)) is False
    auth.sessions.current = {"u1": (4, False)}
    assert auth.session_state(token(4)) is False  # disabled
