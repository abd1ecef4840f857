"""Every service verifies who calls it: the credential, the body limit, the metrics guard, the keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from distretto_dev.testing import ADMIN, GATEWAY_SIGNER, KEYRING, DatabaseTarget, identity_headers
from distretto_shared.app import ConfigurationError, ServiceSpec, create_app
from distretto_shared.identity import (
    IDENTITY_HEADER,
    InvalidCredential,
    Keyring,
    Principal,
    Role,
    TokenSigner,
    Verifier,
    key_id,
    parse_trusted_keys,
    public_pem,
    trusted_key_entry,
)
from distretto_shared.settings import ServiceSettings
from distretto_shared.web import current_principal

from .example import MIGRATIONS

router = APIRouter()


@router.get("/whoami")
async def whoami(principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    return {"id": principal.id, "role": principal.role, "organisation_id": principal.organisation_id}


@router.post("/echo")
async def echo(body: dict[str, Any]) -> dict[str, int]:
    return {"keys": len(body)}


SPEC = ServiceSpec(name="example", settings_cls=ServiceSettings, routers=[router], migrations=MIGRATIONS)


def settings_for(database: DatabaseTarget, **extra: Any) -> ServiceSettings:
    return ServiceSettings(
        database_url=database.url,
        database_schema=database.schema,
        kafka_bootstrap_servers="127.0.0.1:1",
        **extra,
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


def claims_for(principal: Principal, audience: str = "example", **over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "gateway",
        "sub": principal.id,
        "role": principal.role,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        **over,
    }


@pytest.fixture
def client(database: DatabaseTarget) -> Any:
    app = create_app(SPEC, settings_for(database, metrics_allowed_addresses=["10.9.8.7"]))
    with TestClient(app) as c:
        yield c


def test_a_request_without_a_valid_credential_is_refused_before_any_route(client: TestClient) -> None:
    gateway_kid = GATEWAY_SIGNER.kid
    # PyJWT refuses to sign with a PEM as an HMAC secret, so the attacker's token is built by hand.
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": gateway_kid}).encode())
    body = b64(json.dumps(claims_for(ADMIN)).encode())
    secret = public_pem(KEYRING.private_keys["gateway"]).encode()
    forged_hs = f"{head}.{body}.{b64(hmac.new(secret, f'{head}.{body}'.encode(), hashlib.sha256).digest())}"
    stranger = TokenSigner.from_pem("gateway", gateway_kid, Keyring.generate(["x"]).private_keys["x"])
    cases = {
        "none": {},
        "garbage": {IDENTITY_HEADER: "not-a-jwt"},
        "alg none": {IDENTITY_HEADER: unsigned(claims_for(ADMIN), {"alg": "none", "kid": gateway_kid})},
        "HS256 with the public key (RS/HS confusion)": {IDENTITY_HEADER: forged_hs},
        "another audience": identity_headers(ADMIN, "membership"),
        "expired": {IDENTITY_HEADER: GATEWAY_SIGNER.mint(ADMIN, "example", ttl=-60)},
        "an unknown key with the gateway's kid": {IDENTITY_HEADER: stranger.mint(ADMIN, "example")},
        "a service asserting an admin": {
            IDENTITY_HEADER: KEYRING.signer("newsletter").mint(ADMIN, "example"),
        },
        "the gateway asserting a service": {
            IDENTITY_HEADER: GATEWAY_SIGNER.mint(Principal("service:newsletter", Role.SERVICE), "example"),
        },
        "old identity headers": {"X-Distretto-Principal": "user:x", "X-Distretto-Role": "admin"},
    }
    for label, headers in cases.items():
        response = client.get("/whoami", headers=headers)
        assert response.status_code == 401, label
        assert response.json()["error"] == "unauthorized" and response.json()["message"], label
    ok = client.get("/whoami", headers=identity_headers(Principal("user:7", Role.MEMBER, "org-1"), "example"))
    assert ok.status_code == 200
    assert ok.json() == {"id": "user:7", "role": "member", "organisation_id": "org-1"}
    service = client.get("/whoami", headers=KEYRING.signer("newsletter").service_headers("example"))
    assert service.json()["id"] == "service:newsletter" and service.json()["role"] == "service"


def test_probes_answer_without_a_credential_and_metrics_only_for_operators(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)  # the broker is away: not ready, but it answers
    assert client.get("/metrics").status_code == 403  # the test client is not an allowed scrape address
    member = identity_headers(Principal("user:7", Role.MEMBER, "org-1"), "example")
    assert client.get("/metrics", headers=member).status_code == 403
    operator = identity_headers(Principal("user:8", Role.OPERATOR), "example")
    scraped = client.get("/metrics", headers=operator)
    assert scraped.status_code == 200 and "distretto_http_requests_total" in scraped.text


def test_metrics_from_an_allowed_scrape_network(database: DatabaseTarget) -> None:
    app = create_app(SPEC, settings_for(database, metrics_allowed_addresses=["testclient", "0.0.0.0/0", "::/0"]))
    with TestClient(app, client=("192.0.2.10", 50000)) as c:
        assert c.get("/metrics").status_code == 200


def test_bodies_over_the_limit_get_413_before_they_are_read(database: DatabaseTarget) -> None:
    app = create_app(SPEC, settings_for(database, max_body_bytes=2048))
    with TestClient(app, headers=identity_headers(ADMIN, "example")) as c:
        small = c.post("/echo", json={"a": 1})
        assert small.status_code == 200
        big = json.dumps({f"k{i}": "x" * 50 for i in range(100)}).encode()
        declared = c.post("/echo", content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413 and "2048" in declared.json()["message"]

        def chunks() -> Any:
            for i in range(0, len(big), 500):
                yield big[i : i + 500]

        streamed = c.post("/echo", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413


def test_a_service_without_trusted_keys_refuses_to_start(database: DatabaseTarget) -> None:
    with pytest.raises(ConfigurationError, match="DISTRETTO_TRUSTED_KEYS"):
        create_app(SPEC, settings_for(database, trusted_keys=""))
    with pytest.raises(ConfigurationError, match="not usable"):
        create_app(SPEC, settings_for(database, trusted_keys="[{]"))
    with pytest.raises(ConfigurationError, match="SIGNING_KEY"):
        create_app(SPEC, settings_for(database, signing_key="-----BEGIN PRIVATE KEY-----\nnope\n"))


def test_rotation_the_old_key_is_trusted_until_its_date_then_refused() -> None:
    old, new = Keyring.generate(["gateway"]), Keyring.generate(["gateway"])
    old_pub, new_pub = public_pem(old.private_keys["gateway"]), public_pem(new.private_keys["gateway"])
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    old_token = old.signer("gateway").mint(ADMIN, "example")
    new_token = new.signer("gateway").mint(ADMIN, "example")

    def verifier(not_after: str) -> Verifier:
        entries = [
            trusted_key_entry(key_id(old_pub), "gateway", old_pub, not_after),
            trusted_key_entry(key_id(new_pub), "gateway", new_pub),
        ]
        return Verifier("example", parse_trusted_keys(json.dumps(entries)))

    during = verifier(tomorrow)
    assert during.verify(old_token).id == ADMIN.id
    assert during.verify(new_token).id == ADMIN.id
    after = verifier(yesterday)
    assert after.verify(new_token).id == ADMIN.id
    with pytest.raises(InvalidCredential, match="no longer trusted"):
        after.verify(old_token)


def test_a_remembered_credential_is_refused_as_soon_as_a_fresh_check_would_refuse_it() -> None:
    """Verified credentials are remembered (the gateway reuses each for half its life), never beyond
    their expiry, their key's retirement, or their exact text."""
    ring = Keyring.generate(["gateway"])
    pub = public_pem(ring.private_keys["gateway"])
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    verifier = Verifier("example", parse_trusted_keys([trusted_key_entry(key_id(pub), "gateway", pub, tomorrow)]))
    signer = ring.signer("gateway")
    # expired 2 s ago: accepted within the 5 s of tolerated clock skew, and remembered
    late = signer.mint(ADMIN, "example", ttl=-2)
    assert verifier.verify(late).id == ADMIN.id
    assert verifier.verify(late).id == ADMIN.id
    verifier.leeway = 0  # a fresh check refuses it now: so does the remembered one
    with pytest.raises(InvalidCredential, match="expired"):
        verifier.verify(late)
    verifier.leeway = 5

    token = signer.mint(ADMIN, "example")
    assert verifier.verify(token).id == ADMIN.id
    head, payload, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["role"] = "admin"
    forged["sub"] = "user:someone-else"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidCredential):
        verifier.verify(f"{head}.{forged_payload}.{signature}")  # the remembered signature proves nothing
    with pytest.raises(InvalidCredential):
        verifier.verify(token + "x")

    # the key is retired (its not_after passed): the remembered credential goes with it
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    verifier.keys = parse_trusted_keys([trusted_key_entry(key_id(pub), "gateway", pub, yesterday)])
    with pytest.raises(InvalidCredential, match="no longer trusted"):
        verifier.verify(token)


def test_principal_rules() -> None:
    member = Principal("user:1", Role.MEMBER, "org-a")
    assert member.acts_for("org-a") and not member.acts_for("org-b") and not member.acts_for(None)
    assert Principal("user:2", Role.STAFF).acts_for("org-b")
    assert not Principal("apikey:3", Role.PARTNER, "org-a").acts_for("org-a")
    assert not Principal("anonymous", Role.ANONYMOUS).acts_for("org-a")
    assert Principal("service:newsletter", Role.SERVICE).service_name == "newsletter"
