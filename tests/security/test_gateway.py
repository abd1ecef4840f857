"""The gateway and the services, probed as an attacker would, as real processes.

Services answer nothing without a credential minted for them (and nothing with one minted
for another service); forged identity headers do not pass the gateway; oversized bodies get
413 at the gateway and at the services; anonymous callers neither read the gateway's metrics
nor learn where the services are; health probes are never throttled by anonymous traffic.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import httpx

from distretto_dev.testing import ServiceProcess, free_port, identity_headers
from distretto_shared.identity import Principal

from .conftest import ADMIN, Platform, gateway_environment, login, new_user

PERSONAL = [
    ("membership", "/contacts"),
    ("membership", "/organisations/export"),
    ("newsletter", "/subscribers"),
    ("matchmaking", "/matches"),
    ("projects", "/projects"),
]
STAFF = Principal(id="user:security-staff", role="staff")


async def test_services_refuse_calls_without_their_credential(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        for service, path in PERSONAL:
            url = platform.services[service] + path
            bare = await client.get(url)
            assert bare.status_code == 401, (service, path, bare.text)
            assert "credential" in bare.json()["message"]
            other = "projects" if service != "projects" else "membership"
            elsewhere = await client.get(url, headers=identity_headers(STAFF, other))
            assert elsewhere.status_code == 401, (service, path, "credential for " + other, elsewhere.text)
            # identity headers of the old kind count for nothing
            forged = await client.get(url, headers={"X-Distretto-Role": "admin", "X-Distretto-Principal": "user:x"})
            assert forged.status_code == 401, (service, path, forged.text)
            # the same request with a credential for this service is answered: the 401s above are the credential's
            mine = await client.get(url, headers=identity_headers(STAFF, service))
            assert mine.status_code == 200, (service, path, mine.text)


async def test_forged_identity_headers_do_not_pass_the_gateway(platform: Platform) -> None:
    stolen = identity_headers(Principal(id="user:x", role="admin"), "membership")
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as gw:
        for headers in (stolen, {"X-Distretto-Role": "admin", "X-Distretto-Principal": "user:admin"}):
            response = await gw.get("/api/membership/contacts", headers=headers)
            assert response.status_code == 401, response.text
        # with a partner's token the forged admin credential is dropped, the partner's own is sent
        _, partner = await new_user(gw, await login(gw, ADMIN["email"], ADMIN["password"]), "partner")
        refused = await gw.get("/api/membership/contacts", headers={**partner, **stolen})
        assert refused.status_code == 403, refused.text


async def _chunks(total: int, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


async def test_oversized_bodies_get_413(platform: Platform) -> None:
    big = b'{"name": "' + b"x" * (6 * 1024 * 1024) + b'", "kind": "company"}'
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=60) as gw:
        admin = await login(gw, ADMIN["email"], ADMIN["password"])
        json_headers = {**admin, "content-type": "application/json"}
        declared = await gw.post("/api/membership/organisations", content=big, headers=json_headers)
        assert declared.status_code == 413, declared.text[:300]
        assert "larger than" in declared.json()["message"]
        streamed = await gw.post("/api/membership/organisations", content=_chunks(len(big)), headers=json_headers)
        assert streamed.status_code == 413, streamed.text[:300]
        # an anonymous caller too, on a public route (before any authentication)
        anonymous = await gw.post("/api/newsletter/signup", content=big, headers={"content-type": "application/json"})
        assert anonymous.status_code == 413
        # a body under the limit still goes through (a 422 from the service: it was read and judged)
        small = await gw.post("/api/membership/organisations", json={"name": "", "kind": "x"}, headers=admin)
        assert small.status_code == 422
    async with httpx.AsyncClient(timeout=60) as client:
        direct = await client.post(
            platform.services["membership"] + "/organisations",
            content=big,
            headers={**identity_headers(STAFF, "membership"), "content-type": "application/json"},
        )
        assert direct.status_code == 413, direct.text[:300]


async def test_metrics_and_readiness_details_are_for_operators(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as gw:
        anonymous = await gw.get("/metrics")
        assert anonymous.status_code == 401, anonymous.text[:200]
        assert "distretto_gateway_requests_total" not in anonymous.text
        admin = await login(gw, ADMIN["email"], ADMIN["password"])
        _, partner = await new_user(gw, admin, "partner")
        _, operator = await new_user(gw, admin, "operator")
        assert (await gw.get("/metrics", headers=partner)).status_code == 403
        scraped = await gw.get("/metrics", headers=operator)
        assert scraped.status_code == 200 and "distretto_gateway_requests_total" in scraped.text
        # an operator sees no personal data
        assert (await gw.get("/api/membership/contacts", headers=operator)).status_code == 403
        assert (await gw.get("/api/newsletter/subscribers", headers=operator)).status_code == 403
        # ... and reads the services' metrics through the gateway
        assert (await gw.get("/api/membership/metrics", headers=operator)).status_code == 200
        # an operator API key, sent as a scraper sends it
        key = await gw.post(
            "/auth/api-keys",
            json={"name": "Prometheus", "role": "operator", "scopes": ["GET /metrics"], "expires_in_days": 90},
            headers=admin,
        )
        assert key.status_code == 201, key.text
        bearer = {"Authorization": f"Bearer {key.json()['key']}"}
        assert (await gw.get("/metrics", headers=bearer)).status_code == 200

        ready = await gw.get("/readyz")
        assert ready.status_code == 200
        assert "127.0.0.1" not in ready.text and "url" not in ready.text, ready.text
        assert set(ready.json()["checks"]["upstreams"]) == {
            "membership",
            "projects",
            "newsletter",
            "matchmaking",
            "partners",
        }
        health = await gw.get("/healthz")
        assert "127.0.0.1" not in health.text, health.text
        detailed = await gw.get("/readyz", headers=operator)
        urls = {u["url"] for u in detailed.json()["checks"]["upstreams"].values()}
        assert urls == set(platform.services.values())


async def test_probes_are_never_throttled_by_anonymous_traffic(platform: Platform) -> None:
    """A gateway with a tight anonymous limit: anonymous callers get 429, probes and scrapes never do."""
    env = gateway_environment(
        platform.database,
        platform.services,
        GATEWAY_ANONYMOUS_RATE_LIMIT_PER_MINUTE="6",
        GATEWAY_ANONYMOUS_RATE_LIMIT_BURST="3",
        GATEWAY_METRICS_ALLOWED_ADDRESSES=json.dumps(["127.0.0.1"]),  # this test is the scraper
        DISTRETTO_DATA_DIR=str(platform.root / "throttled"),
        KAFKA_BOOTSTRAP_SERVERS=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
    )
    gateway = await ServiceProcess(
        "gateway", port=free_port(), env=env, log_path=platform.root / "throttled-gateway.log"
    ).start(timeout=90)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=20) as gw:
            anonymous: list[int] = []
            probes: list[tuple[str, int]] = []
            for _ in range(13):
                for _ in range(3):
                    anonymous.append((await gw.get("/api/membership/figures")).status_code)
                for path in ("/readyz", "/healthz", "/metrics"):
                    probes.append((path, (await gw.get(path)).status_code))
            assert anonymous.count(429) >= len(anonymous) - 5, anonymous  # the anonymous bucket ran dry
            assert all(code == 200 for _, code in probes), [p for p in probes if p[1] != 200]
            assert len(probes) == 39
    finally:
        gateway.stop()
