"""The gateway in front of real stand-in services: authorisation matrix, auth routes, proxy behaviour."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import httpx
import jwt
import pytest

from distretto_dev.testing import KEYRING, DatabaseTarget, ServiceProcess, free_port
from gateway.domain import ANY_METHOD, POLICY, Policy, Role
from gateway.identify import Unauthorized

from .conftest import (
    ADMIN_EMAIL,
    Upstreams,
    admin_headers,
    create_user,
    gateway_settings,
    login,
    my_id,
    principal_seen,
    running_gateway,
    user_token,
)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


async def test_authorisation_matrix_every_route_every_role(database: DatabaseTarget, upstreams: Upstreams) -> None:
    """Every rule of the policy table × every role (token and API key) × anonymous: allowed, 401 or 403."""
    async with running_gateway(gateway_settings(database, upstreams)) as client:
        admin = await admin_headers(client)
        identities: dict[str, tuple[Role | None, dict[str, str]]] = {
            "anonymous": (None, {}),
            "admin": (Role.ADMIN, admin),
        }
        for role in (Role.STAFF, Role.MEMBER, Role.PARTNER, Role.OPERATOR):
            identities[role.value] = (role, await create_user(client, admin, role.value))
        issued = await client.post(
            "/auth/api-keys", json={"name": "partner system", "scopes": ["/*"], "expires_in_days": 30}, headers=admin
        )
        assert issued.status_code == 201, issued.text
        identities["partner api key"] = (Role.PARTNER, {"X-API-Key": issued.json()["key"]})

        policy = Policy()
        checked = 0
        for rule in POLICY:
            path = rule.example_path()
            methods = METHODS if ANY_METHOD in rule.methods else rule.methods
            for method in [m for m in methods if policy.match(m, path) is rule]:
                for who, (role, headers) in identities.items():
                    # forged identity headers must never count
                    forged = {**headers, "X-Distretto-Role": "admin", "X-Distretto-Principal": "user:forged"}
                    body = {} if method in ("POST", "PUT", "PATCH") else None
                    response = await client.request(method, path, headers=forged, json=body)
                    label = f"{who} {method} {path} → {response.status_code} {response.text[:120]}"
                    if rule.allows(role):
                        assert response.status_code not in (401, 403), label
                        if rule.upstream != "gateway":
                            assert response.status_code == 200, label
                            if path.endswith("/stream"):
                                continue  # the stand-ins answer /stream with a byte stream, not the echo
                            echo = response.json()
                            assert echo["service"] == rule.upstream, label
                            assert echo["path"] == path.removeprefix(f"/api/{rule.upstream}"), label
                            seen = echo["headers"]
                            # forged identity headers never reach the service; the credential says who called
                            assert "x-distretto-role" not in seen and "x-distretto-principal" not in seen, label
                            caller = principal_seen(echo)
                            if role is None:
                                assert caller.role == "anonymous", label
                            else:
                                assert caller.role == role.value, label
                                assert caller.id != "user:forged", label
                    else:
                        assert response.status_code == (401 if role is None else 403), label
                        assert response.json()["message"], label
                    checked += 1
        assert checked >= len(POLICY) * len(identities)

        # unknown routes: 404 for anybody; a known path with another method: 405 with every allowed one
        for headers in ({}, admin):
            for path in ("/api/nowhere/x", "/auth/nowhere"):
                response = await client.get(path, headers=headers)
                assert response.status_code == 404, path
                assert response.json()["error"] == "not_found" and response.json()["details"] == []
            response = await client.delete("/auth/token", headers=headers)
            assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
            assert response.headers["allow"] == "OPTIONS, POST"
            response = await client.options("/auth/users", headers=headers)
            assert response.status_code == 204 and response.headers["allow"] == "GET, OPTIONS, POST"


async def test_tokens_users_and_api_keys(database: DatabaseTarget, upstreams: Upstreams) -> None:
    settings = gateway_settings(database, upstreams)
    async with running_gateway(settings) as client:
        # malformed or wrong credentials
        bad_json = await client.post("/auth/token", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 422 and bad_json.json()["message"]
        missing = await client.post("/auth/token", json={"email": ADMIN_EMAIL})
        assert missing.status_code == 422 and "password" in missing.json()["message"]
        wrong = await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": "nope"})
        assert wrong.status_code == 401 and wrong.json()["message"]
        unknown = await client.post("/auth/token", json={"email": "who@x.test", "password": "nope"})
        assert unknown.status_code == 401

        admin = await admin_headers(client)
        me = (await client.get("/auth/me", headers=admin)).json()
        assert me["role"] == "admin" and me["email"] == ADMIN_EMAIL

        # bad input writes nothing
        before = (await client.get("/auth/users", headers=admin)).json()["total"]
        for body in (
            {"email": "short@x.test", "password": "short", "role": "staff"},
            {"email": "not-an-email", "password": "long-enough-password", "role": "staff"},
            {"email": "r@x.test", "password": "long-enough-password", "role": "emperor"},
        ):
            response = await client.post("/auth/users", json=body, headers=admin)
            assert response.status_code == 422 and response.json()["message"], response.text
        assert (await client.get("/auth/users", headers=admin)).json()["total"] == before

        staff = await create_user(client, admin, "staff")
        dup = await client.post(
            "/auth/users",
            json={"email": "STAFF-0@gateway.test", "password": "another-password-1", "role": "member"},
            headers=admin,
        )
        assert dup.status_code == 409 and "already exists" in dup.json()["message"]
        page = (await client.get("/auth/users", params={"limit": 1, "offset": 1}, headers=admin)).json()
        assert page["total"] == before + 1 and len(page["items"]) == 1 and page["limit"] == 1
        assert "password_hash" not in page["items"][0]
        assert (await client.get("/auth/users", params={"limit": 0}, headers=admin)).status_code == 422

        # a member user carries its organisation to the services
        member = await create_user(client, admin, "member", organisation_id="org-42")
        echo = (await client.get("/api/projects/projects", headers=member)).json()
        assert principal_seen(echo).organisation_id == "org-42"
        assert "authorization" not in echo["headers"]  # credentials stay at the gateway

        # a disabled user can no longer log in, and the token issued before stops working at once
        users = (await client.get("/auth/users", params={"role": "staff"}, headers=admin)).json()["items"]
        staff_id = users[0]["id"]
        assert (await client.get("/api/projects/projects", headers=staff)).status_code == 200
        patched = await client.patch(f"/auth/users/{staff_id}", json={"active": False}, headers=admin)
        assert patched.status_code == 200 and patched.json()["active"] is False
        assert (
            await client.post("/auth/token", json={"email": "staff-0@gateway.test", "password": "staff-password-1234"})
        ).status_code == 401
        assert (await client.get("/auth/users/nobody", headers=admin)).status_code == 404
        ended = await client.get("/api/projects/projects", headers=staff)
        assert ended.status_code == 401 and "session has ended" in ended.json()["message"]

        # bad, forged and expired tokens
        for header in ("Bearer garbage", "Bearer ", "Basic abc", "Token x"):
            response = await client.get("/api/projects/projects", headers={"Authorization": header})
            assert response.status_code == 401 and response.json()["message"], header
        forged = jwt.encode(
            {"sub": "x", "role": "admin", "iat": 0, "exp": time.time() + 60, "iss": "gateway", "aud": "distretto"},
            "other-secret-of-at-least-32-bytes!!",
            algorithm="HS256",
        )
        assert (await client.get("/auth/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
        now = int(time.time())
        admin_id = await my_id(client, admin)
        expired = user_token({"sub": admin_id, "role": "admin", "iat": now - 7200, "exp": now - 3600})
        response = await client.get("/auth/me", headers={"Authorization": f"Bearer {expired}"})
        assert response.status_code == 401 and "expired" in response.json()["message"]
        # even a public route refuses a bad credential rather than silently treating the caller as anonymous
        assert (
            await client.get("/api/membership/figures", headers={"Authorization": "Bearer garbage"})
        ).status_code == 401

        # API keys: shown once, stored hashed, revocable
        body = {"name": "Partner CRM", "role": "partner", "scopes": ["GET /api/projects/*"], "expires_in_days": 7}
        issued = await client.post("/auth/api-keys", json=body, headers=admin)
        assert issued.status_code == 201
        assert issued.json()["scopes"] == ["GET /api/projects/*"] and issued.json()["expires_at"]
        key = issued.json()["key"]
        key_id = issued.json()["id"]
        listed = (await client.get("/auth/api-keys", headers=admin)).json()
        assert listed["total"] == 1 and "key" not in listed["items"][0]
        assert listed["items"][0]["prefix"] == key[:10]
        echo = (await client.get("/api/projects/projects", headers={"X-API-Key": key})).json()
        # the principal keeps the stored 32-hex form (services record it); the API answers the key dashed
        assert principal_seen(echo).id == f"apikey:{uuid.UUID(key_id).hex}"
        assert principal_seen(echo).role == "partner"
        assert "x-api-key" not in echo["headers"]
        # outside its scopes: 403, even where its role would be let in
        outside = await client.get("/api/membership/organisations", headers={"X-API-Key": key})
        assert outside.status_code == 403 and "scopes" in outside.json()["message"]
        assert (await client.post("/api/projects/projects", json={}, headers={"X-API-Key": key})).status_code == 403
        for bad in (
            {"name": ""},
            {**body, "role": "admin"},  # administrators log in as users
            {**body, "scopes": []},
            {**body, "scopes": ["not a scope"]},
            {k: v for k, v in body.items() if k != "expires_in_days"},
            {**body, "expires_in_days": 100_000},  # beyond the gateway's limit
            {**body, "expires_in_days": 0},
        ):
            refused = await client.post("/auth/api-keys", json=bad, headers=admin)
            assert refused.status_code == 422 and refused.json()["message"], (bad, refused.text)
        revoked = await client.delete(f"/auth/api-keys/{key_id}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        response = await client.get("/api/projects/projects", headers={"X-API-Key": key})
        assert response.status_code == 401 and "revoked" in response.json()["message"]
        assert (await client.get("/api/projects/projects", headers={"X-API-Key": "dk_made_up"})).status_code == 401
        assert (await client.get("/auth/api-keys", headers=admin)).json()["total"] == 0
        assert (await client.get("/auth/api-keys", params={"include_revoked": True}, headers=admin)).json()[
            "total"
        ] == 1
        assert (await client.delete("/auth/api-keys/nope", headers=admin)).status_code == 404

        # a user changes their own password
        member2 = await create_user(client, admin, "member")
        wrong_current = await client.post(
            "/auth/password", json={"current_password": "x", "new_password": "a-brand-new-password"}, headers=member2
        )
        assert wrong_current.status_code == 401
        changed = await client.post(
            "/auth/password",
            json={"current_password": "member-password-1234", "new_password": "a-brand-new-password"},
            headers=member2,
        )
        assert changed.status_code == 204
        fresh = await login(client, "member-0@gateway.test", "a-brand-new-password")
        # the tokens issued before the change are ended; the new one works
        assert (await client.get("/auth/me", headers=member2)).status_code == 401
        assert (await client.get("/auth/me", headers=fresh)).status_code == 200
        # a refresh gives a new token while the session is current
        refreshed = await client.post("/auth/refresh", headers=fresh)
        assert refreshed.status_code == 200, refreshed.text
        again = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        assert (await client.get("/auth/me", headers=again)).json()["role"] == "member"


async def test_bootstrap_admin_is_created_once(database: DatabaseTarget, upstreams: Upstreams) -> None:
    settings = gateway_settings(database, upstreams)
    for _ in range(2):
        async with running_gateway(settings) as client:
            admin = await admin_headers(client)
            admins = (await client.get("/auth/users", params={"role": "admin"}, headers=admin)).json()
            assert admins["total"] == 1
    # with no bootstrap password nothing is created
    empty = gateway_settings(database, upstreams, admin_email="other@gateway.test", admin_password="")
    async with running_gateway(empty) as client:
        response = await client.post("/auth/token", json={"email": "other@gateway.test", "password": "x"})
        assert response.status_code == 401


async def test_health_and_readiness_report_each_service(database: DatabaseTarget, upstreams: Upstreams) -> None:
    async with running_gateway(gateway_settings(database, upstreams)) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert all(u["ok"] for u in health.json()["upstreams"].values())
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        # anonymous callers learn ready or not, never where the services are
        assert "url" not in ready.text and all(set(u) == {"ok"} for u in checks["upstreams"].values())
        assert checks["database"]["ok"] and set(checks["upstreams"]) == {
            "membership",
            "projects",
            "newsletter",
            "matchmaking",
            "partners",
        }
    upstreams.apps["newsletter"].ready = False
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        async with running_gateway(gateway_settings(database, upstreams, matchmaking_url=dead)) as client:
            ready = await client.get("/readyz", headers=await admin_headers(client))
            assert ready.status_code == 503
            checks = ready.json()["checks"]["upstreams"]
            assert checks["newsletter"]["ok"] is False and checks["newsletter"]["status"] == 503
            assert checks["matchmaking"] == {"ok": False, "url": dead, "error": "connection refused"}
            assert checks["membership"]["ok"] is True
            assert (await client.get("/healthz")).status_code == 200
    finally:
        upstreams.apps["newsletter"].ready = True


async def test_demo_is_idempotent(tmp_path: object, upstreams: Upstreams) -> None:
    """``python -m gateway.demo`` against a running gateway: the second run adds nothing."""
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.db",
        "GATEWAY_ADMIN_PASSWORD": "demo-admin-password",
        "GATEWAY_ARGON2_MEMORY_KIB": "1024",
        "GATEWAY_ARGON2_TIME_COST": "1",
        "GATEWAY_ARGON2_PARALLELISM": "1",
        "GATEWAY_CREATE_TOPICS": "false",
        "GATEWAY_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    process = await ServiceProcess("gateway", env=env).start()
    try:
        cmd = [
            sys.executable,
            "-m",
            "gateway.demo",
            "--base-url",
            process.url,
            "--admin-password",
            "demo-admin-password",
        ]
        first = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, check=True)
        second = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, check=True)
        assert "4 created, 0 already there" in first.stdout
        assert "0 created, 4 already there" in second.stdout
        async with httpx.AsyncClient(base_url=process.url) as client:
            password = first.stdout.split("member@toscana-life-sciences.example (member), password ")[1].split()[0]
            member = await login(client, "member@toscana-life-sciences.example", password)
            assert (await client.get("/auth/me", headers=member)).json()["role"] == "member"
    finally:
        process.stop()


async def test_a_remembered_token_still_expires(sqlite_database: DatabaseTarget, upstreams: Upstreams) -> None:
    """Verified tokens are cached, but never past their ``exp``."""
    settings = gateway_settings(sqlite_database, upstreams)
    async with running_gateway(settings) as client:
        admin_id = await my_id(client, await admin_headers(client))
        exp = int(time.time()) + 2
        token = user_token({"sub": admin_id, "role": "admin", "iat": exp - 60, "exp": exp})
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(3):  # verified once, then answered from the cache
            assert (await client.get("/auth/me", headers=headers)).json()["principal"] == f"user:{admin_id}"
        await asyncio.sleep(max(0.0, exp - time.time()) + 0.1)
        expired = await client.get("/api/projects/projects", headers=headers)
        assert expired.status_code == 401 and "expired" in expired.json()["message"]


def test_token_cache_is_bounded_least_recently_used_first(sqlite_database: DatabaseTarget) -> None:
    from gateway.config import Settings
    from gateway.identify import Authenticator

    settings = Settings(database_url=sqlite_database.url, token_cache_size=2)
    auth = Authenticator(settings, db=None, signer=KEYRING.signer("gateway"))  # type: ignore[arg-type]
    tokens = [user_token({"sub": f"u{i}", "role": "staff"}) for i in range(3)]
    auth.verify_token(tokens[0])
    auth.verify_token(tokens[1])
    auth.verify_token(tokens[0])  # used again: now the most recent
    auth.verify_token(tokens[2])  # evicts tokens[1], the least recently used
    assert list(auth._tokens) == [tokens[0], tokens[2]]
    # a token one byte off is a different key: verified (and refused) on its own
    with pytest.raises(Unauthorized):
        auth.verify_token(tokens[0][:-1] + ("A" if tokens[0][-1] != "A" else "B"))


async def test_console_pages_and_local_api_docs(database: DatabaseTarget, upstreams: Upstreams) -> None:
    """Every path outside the API and the gateway's own goes to the console unchanged; /docs needs no CDN."""
    async with running_gateway(gateway_settings(database, upstreams)) as client:
        for path in ("/", "/members", "/members/abc/figures", "/static/app.css", "/admin"):
            response = await client.get(path, params={"q": "x"})
            assert response.status_code == 200, (path, response.text)
            echo = response.json()
            assert echo["service"] == "console" and echo["path"] == path, echo
        posted = await client.post("/login", data={"email": "a@b.c"}, headers={"Cookie": "console_session=s"})
        assert posted.status_code == 200 and posted.json()["headers"]["cookie"] == "console_session=s"
        # the API and the gateway's own routes never reach the console
        assert (await client.get("/api/nowhere")).status_code == 404
        assert (await client.get("/auth/me")).status_code == 401
        assert (await client.get("/healthz")).json()["service"] == "gateway"
        page = await client.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower() and "/docs/static/swagger-ui-bundle.js" in page.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            served = await client.get(f"/docs/static/{asset}")
            assert served.status_code == 200 and len(served.content) > 10_000, asset
        assert (await client.get("/docs/static/..%2Fapi.py")).status_code != 200
        assert (await client.get("/docs/static/other.js")).status_code == 404
