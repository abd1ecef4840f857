"""The proxy path against real stand-in services: headers, ids, streaming, 502/504, limits, CORS, OpenAPI, metrics."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import httpx
from prometheus_client.parser import text_string_to_metric_families

from distretto_dev.testing import DatabaseTarget, ServiceProcess, free_port

from .conftest import Upstreams, admin_headers, create_user, gateway_settings, principal_seen, running_gateway


async def test_prefix_stripped_query_kept_headers_cleaned(
    sqlite_database: DatabaseTarget, upstreams: Upstreams
) -> None:
    async with running_gateway(gateway_settings(sqlite_database, upstreams)) as client:
        response = await client.get(
            "/api/membership/figures?year=2024&kind=company",
            headers={
                "Connection": "keep-alive, X-Private-Hop",
                "X-Private-Hop": "secret",
                "Proxy-Authorization": "Basic x",
                "X-Forwarded-For": "6.6.6.6",
                "X-Custom": "kept",
            },
        )
        assert response.status_code == 200
        echo = response.json()
        assert echo["path"] == "/figures" and echo["query"] == "year=2024&kind=company"
        seen = echo["headers"]
        assert "x-private-hop" not in seen and "proxy-authorization" not in seen
        assert seen["x-custom"] == "kept"
        assert seen["x-forwarded-for"] == "127.0.0.1"  # an untrusted X-Forwarded-For is replaced
        assert seen["x-forwarded-proto"] == "http"
        # the upstream's own hop-by-hop headers do not come back
        assert response.headers["x-stand-in"] == "membership"
        assert "x-secret-hop" not in response.headers


async def test_request_and_correlation_ids(sqlite_database: DatabaseTarget, upstreams: Upstreams) -> None:
    async with running_gateway(gateway_settings(sqlite_database, upstreams)) as client:
        fresh = await client.get("/api/membership/figures")
        rid = fresh.headers["x-request-id"]
        assert len(rid) >= 16 and fresh.headers["x-correlation-id"] == rid
        assert fresh.json()["headers"]["x-request-id"] == rid
        assert fresh.json()["headers"]["x-correlation-id"] == rid
        given = await client.get(
            "/api/membership/figures", headers={"X-Request-ID": "req-1", "X-Correlation-ID": "flow-9"}
        )
        assert given.headers["x-request-id"] == "req-1" and given.headers["x-correlation-id"] == "flow-9"
        assert given.json()["headers"]["x-correlation-id"] == "flow-9"
        # the gateway's own routes carry them too
        assert (await client.get("/healthz", headers={"X-Correlation-ID": "flow-9"})).headers[
            "x-correlation-id"
        ] == "flow-9"


async def test_bodies_stream_both_ways(sqlite_database: DatabaseTarget, upstreams: Upstreams) -> None:
    payload = os.urandom(64 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):  # 4 MiB, chunked
            yield payload

    async with running_gateway(gateway_settings(sqlite_database, upstreams)) as client:
        staff = await create_user(client, await admin_headers(client), "staff")
        response = await client.post("/api/projects/imports", content=chunks(), headers=staff)
        assert response.status_code == 200, response.text
        assert response.json()["body_bytes"] == 64 * len(payload)
        assert response.json()["body_sha256"] == hashlib.sha256(payload * 64).hexdigest()
        streamed = await client.get("/api/projects/stream", headers=staff)
        assert streamed.status_code == 200
        assert streamed.content == b"".join(f"{i:05d}".encode() * 2000 for i in range(200))


async def test_downed_upstream_is_502_and_slow_one_504(sqlite_database: DatabaseTarget, upstreams: Upstreams) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = gateway_settings(sqlite_database, upstreams, projects_url=dead, read_timeout=0.5)
    async with running_gateway(settings) as client:
        staff = await create_user(client, await admin_headers(client), "staff")
        down = await client.get("/api/projects/projects", headers=staff)
        assert down.status_code == 502
        assert down.json()["details"] == [{"upstream": "projects"}] and "projects" in down.json()["message"]
        slow = await client.get("/api/membership/slow", headers=staff)
        assert slow.status_code == 504
        assert "membership" in slow.json()["message"] and "0.5 s" in slow.json()["message"]
        # the others keep working
        assert (await client.get("/api/membership/figures")).status_code == 200
        metrics = (await client.get("/metrics", headers=await admin_headers(client))).text
        assert 'distretto_gateway_upstream_errors_total{kind="refused",upstream="projects"}' in metrics
        assert 'distretto_gateway_upstream_errors_total{kind="timeout",upstream="membership"}' in metrics


async def test_rate_limits_answer_429_with_retry_after(sqlite_database: DatabaseTarget, upstreams: Upstreams) -> None:
    settings = gateway_settings(
        sqlite_database,
        upstreams,
        rate_limit_per_minute=6,
        rate_limit_burst=3,
        anonymous_rate_limit_per_minute=6,
        anonymous_rate_limit_burst=2,
    )
    async with running_gateway(settings) as client:
        admin = await admin_headers(client)  # anonymous call no. 1
        assert (await client.get("/api/membership/figures")).status_code == 200  # anonymous no. 2
        limited = await client.get("/api/membership/figures")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1 and limited.json()["message"]
        statuses = [(await client.get("/api/projects/projects", headers=admin)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        # the limit covers the gateway's own routes too
        assert (await client.post("/auth/api-keys", json={"name": "x"}, headers=admin)).status_code == 429
    async with running_gateway(
        gateway_settings(sqlite_database, upstreams, login_rate_limit_per_minute=6, login_rate_limit_burst=2)
    ) as client:
        codes = [
            (await client.post("/auth/token", json={"email": "a@b.test", "password": "guess"})).status_code
            for _ in range(3)
        ]
        assert codes == [401, 401, 429]


async def test_separate_principals_have_separate_buckets(sqlite_database: DatabaseTarget, upstreams: Upstreams) -> None:
    settings = gateway_settings(sqlite_database, upstreams, rate_limit_per_minute=6, rate_limit_burst=2)
    async with running_gateway(settings) as client:
        admin = await admin_headers(client)
        staff = await create_user(client, admin, "staff")  # admin spends 1
        member = await create_user(client, admin, "member")  # admin spends 2
        assert (await client.get("/auth/me", headers=admin)).status_code == 429
        assert [(await client.get("/auth/me", headers=staff)).status_code for _ in range(3)] == [200, 200, 429]
        assert (await client.get("/auth/me", headers=member)).status_code == 200


async def test_cors_for_configured_origins(sqlite_database: DatabaseTarget, upstreams: Upstreams) -> None:
    settings = gateway_settings(sqlite_database, upstreams, cors_origins=["https://app.distretto.example"])
    async with running_gateway(settings) as client:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        ok = await client.options(
            "/api/membership/organisations", headers={"Origin": "https://app.distretto.example", **preflight}
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.distretto.example"
        other = await client.options(
            "/api/membership/organisations", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers
        simple = await client.get("/api/membership/figures", headers={"Origin": "https://app.distretto.example"})
        assert simple.headers["access-control-allow-origin"] == "https://app.distretto.example"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


async def test_aggregated_openapi_tolerates_a_downed_service(
    sqlite_database: DatabaseTarget, upstreams: Upstreams
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with running_gateway(gateway_settings(sqlite_database, upstreams, newsletter_url=dead)) as client:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        doc = response.json()
        assert "/api/membership/organisations/{organisation_id}" in doc["paths"]
        assert "/api/projects/figures" in doc["paths"]
        assert not any(p.startswith("/api/newsletter") for p in doc["paths"])
        assert doc["x-distretto-upstreams"]["newsletter"]["included"] is False
        assert "newsletter" in doc["info"]["description"]
        schemas = doc["components"]["schemas"]
        assert {"membership_Organisation", "projects_Organisation", "matchmaking_Organisation"} <= set(schemas)
        assert {"bearerAuth", "apiKeyAuth"} <= set(doc["components"]["securitySchemes"])
        assert "/auth/token" in doc["paths"] and "UserPublic" in schemas
        assert doc["paths"]["/api/membership/figures"]["get"]["security"] == []
        assert doc["paths"]["/auth/users"]["post"]["x-distretto-roles"] == ["admin"]
        docs = await client.get("/docs")
        assert docs.status_code == 200 and "/openapi.json" in docs.text


async def test_metrics_by_policy_route_and_upstream(sqlite_database: DatabaseTarget, upstreams: Upstreams) -> None:
    route = "/api/membership/organisations/{organisation_id}"
    labels = {"method": "GET", "route": route, "status": "401", "upstream": "membership"}
    async with running_gateway(gateway_settings(sqlite_database, upstreams)) as client:
        before = sample(
            await client.get("/metrics", headers=await admin_headers(client)),
            "distretto_gateway_requests_total",
            labels,
        )
        for org in ("o1", "o2", "o3"):
            await client.get(f"/api/membership/organisations/{org}")
        text = await client.get("/metrics", headers=await admin_headers(client))
        # counted under the policy pattern, not the raw path with its ids
        assert sample(text, "distretto_gateway_requests_total", labels) == before + 3
        assert "/api/membership/organisations/o1" not in text.text
        latency = {"route": route, "upstream": "membership"}
        assert sample(text, "distretto_gateway_request_duration_seconds_count", latency) >= 3


def sample(response: httpx.Response, name: str, labels: dict[str, str]) -> float:
    """A sample's value in a /metrics answer (0 when absent)."""
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def test_real_process_serves_and_proxies(tmp_path: object, upstreams: Upstreams) -> None:
    """``python -m gateway serve`` on uvloop/httptools: the whole path over real sockets."""
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gw.db",
        "GATEWAY_ADMIN_PASSWORD": "process-admin-password",
        "GATEWAY_ARGON2_MEMORY_KIB": "1024",
        "GATEWAY_ARGON2_TIME_COST": "1",
        "GATEWAY_ARGON2_PARALLELISM": "1",
        "GATEWAY_CREATE_TOPICS": "false",
        "GATEWAY_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        **{f"GATEWAY_{name.upper()}_URL": url for name, url in upstreams.urls.items()},
    }
    process = ServiceProcess("gateway", env=env, log_path=tmp_path / "gateway.log")  # type: ignore[operator]
    await process.start()
    try:
        async with httpx.AsyncClient(base_url=process.url) as client:
            token = await client.post(
                "/auth/token", json={"email": "admin@distretto.example", "password": "process-admin-password"}
            )
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            payload = os.urandom(300_000)
            echo = await client.put("/api/newsletter/templates/t1", content=payload, headers=headers)
            assert echo.status_code == 200
            assert echo.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()
            assert principal_seen(echo.json()).role == "admin"
            streamed = await client.get("/api/newsletter/stream", headers=headers)
            assert len(streamed.content) == 200 * 10_000
    finally:
        process.stop()
