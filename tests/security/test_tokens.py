"""Tokens and keys, tried as an attacker would, against real processes.

Forged user tokens (the old published secret, ``alg: none``, HS256 keyed with the gateway's
public key, an unknown Ed25519 key, expired, a service credential used as a user token); users
who are disabled, demoted or change their password lose their existing tokens within seconds,
on every gateway worker; API keys that are revoked, expired or used outside their scopes; an
admin API key cannot be minted; a process with a missing or published secret refuses to start;
a rotated signing key is honoured until its ``not_after`` and not after.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from distretto_dev.testing import KEYRING, DatabaseTarget, free_port, identity_headers, service_client, wait_for
from distretto_shared.identity import (
    Principal,
    Verifier,
    generate_keypair,
    key_id,
    load_private_key,
    parse_trusted_keys,
    public_pem,
    trusted_key_entry,
)

from .conftest import ADMIN, Platform, login, new_user

OLD_DEFAULT_SECRET = "change-me-distretto-gateway-secret-at-least-32-bytes"
"""What ``services/gateway/src/gateway/config.py`` used to sign every token with."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def _gateway_kid() -> str:
    return key_id(public_pem(KEYRING.private_keys["gateway"]))


def forged_tokens(user_id: str) -> dict[str, str]:
    """Every way to make an admin token without the gateway's private key."""
    now = int(time.time())
    admin = {"sub": user_id, "role": "admin", "iat": now, "exp": now + 600, "sv": 1}
    claims = {**admin, "iss": "gateway", "aud": "distretto"}
    kid = _gateway_kid()
    gateway_public = public_pem(KEYRING.private_keys["gateway"])
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    confused = _unsigned(hs_header, claims)
    confusion_sig = hmac.new(gateway_public.encode(), confused.encode(), hashlib.sha256).digest()
    attacker_key, _ = generate_keypair()
    return {
        # the secret that used to be written in the code, in the claims the old gateway wanted
        "old default secret": jwt.encode({**admin, "iss": "distretto-gateway"}, OLD_DEFAULT_SECRET, algorithm="HS256"),
        "old default secret, new claims": jwt.encode(
            claims, OLD_DEFAULT_SECRET, algorithm="HS256", headers={"kid": kid}
        ),
        "alg none": _unsigned({"alg": "none", "typ": "JWT", "kid": kid}, claims) + ".",
        "alg None, signature kept": _unsigned({"alg": "None", "typ": "JWT", "kid": kid}, claims) + "." + _b64(b"x"),
        # RS/HS confusion: HMAC keyed with the (public) verification key
        "HS256 keyed with the gateway's public key": confused + "." + _b64(confusion_sig),
        "EdDSA, an attacker's key under the gateway's kid": jwt.encode(
            claims, load_private_key(attacker_key), algorithm="EdDSA", headers={"kid": kid}
        ),
        "EdDSA, expired": jwt.encode(
            {**claims, "iat": now - 7200, "exp": now - 3600},
            load_private_key(KEYRING.private_keys["gateway"]),
            algorithm="EdDSA",
            headers={"kid": kid},
        ),
        # a credential the gateway minted for a service is not a user token (audience)
        "a service credential": identity_headers(Principal(id=f"user:{user_id}", role="admin"), "membership")[
            "x-distretto-identity"
        ],
    }


async def _admin(client: httpx.AsyncClient) -> dict[str, str]:
    return await login(client, ADMIN["email"], ADMIN["password"])


async def test_forged_tokens_are_refused(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as gw:
        admin = await _admin(gw)
        admin_id = (await gw.get("/auth/me", headers=admin)).json()["principal"].removeprefix("user:")
        assert (await gw.get("/auth/users", headers=admin)).status_code == 200  # the real token works
        for name, token in forged_tokens(admin_id).items():
            for path in ("/auth/users", "/api/membership/contacts"):
                response = await gw.get(path, headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 401, (name, path, response.status_code, response.text)
                assert response.json()["message"], name
    # and a user's token is no credential at a service
    user_token = admin["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(base_url=platform.services["membership"], timeout=20) as direct:
        response = await direct.get("/contacts", headers={"X-Distretto-Identity": user_token})
        assert response.status_code == 401, response.text


async def _answers(
    gw: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], n: int = 6
) -> list[httpx.Response]:
    """``n`` requests, each on a new connection (so both gateway workers answer some)."""
    answers = []
    for _ in range(n):
        async with httpx.AsyncClient(base_url=gw.base_url, timeout=20) as fresh:
            answers.append(await fresh.request(method, path, headers=headers))
    return answers


async def _all(gw: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], n: int = 6) -> list[int]:
    return [r.status_code for r in await _answers(gw, method, path, headers, n)]


async def _refused_everywhere(gw: httpx.AsyncClient, path: str, headers: dict[str, str]) -> bool:
    return all(code == 401 for code in await _all(gw, "GET", path, headers))


@pytest.mark.parametrize(
    "change",
    [
        {"role": "partner"},  # demoted
        {"active": False},  # disabled
        {"password": "an-entirely-new-password"},  # password reset by an admin
        {"organisation_id": "another-organisation"},  # moved to another member
    ],
    ids=["demoted", "disabled", "password-reset", "moved"],
)
async def test_a_changed_user_loses_existing_tokens_within_seconds(platform: Platform, change: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as gw:
        admin = await _admin(gw)
        user_id, staff = await new_user(gw, admin, "staff", organisation_id="org-a")
        assert await _all(gw, "GET", "/api/membership/contacts", staff) == [200] * 6
        patched = await gw.patch(f"/auth/users/{user_id}", json=change, headers=admin)
        assert patched.status_code == 200, patched.text

        # every worker refuses the old token within a few seconds (they re-read session versions every 2 s)
        async def ended_everywhere() -> bool:
            answers = await _answers(gw, "GET", "/auth/me", staff)
            return all(r.status_code == 401 and "session has ended" in r.json()["message"] for r in answers)

        await wait_for(
            ended_everywhere, timeout=15, interval=0.2, what=f"the old token refused on every worker after {change}"
        )
        assert (await gw.post("/auth/refresh", headers=staff)).status_code == 401


async def test_own_password_change_ends_other_tokens(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as gw:
        admin = await _admin(gw)
        email = f"member-{os.urandom(4).hex()}@security.example"
        created = await gw.post(
            "/auth/users",
            json={"email": email, "password": "first-password-123", "role": "member", "organisation_id": "o1"},
            headers=admin,
        )
        assert created.status_code == 201
        stolen = await login(gw, email, "first-password-123")
        mine = await login(gw, email, "first-password-123")
        changed = await gw.post(
            "/auth/password",
            json={"current_password": "first-password-123", "new_password": "second-password-456"},
            headers=mine,
        )
        assert changed.status_code == 204
        await wait_for(lambda: _refused_everywhere(gw, "/auth/me", stolen), timeout=15, what="stolen token ended")
        fresh = await login(gw, email, "second-password-456")
        assert await _all(gw, "GET", "/auth/me", fresh) == [200] * 6


async def _set_key_expiry(database: DatabaseTarget, key_id_: str, when: datetime) -> None:
    engine = create_async_engine(database.url)
    table = sa.table(
        "api_key",
        sa.column("id", sa.String),
        sa.column("expires_at", sa.DateTime(timezone=True)),
        schema=database.schema,
    )
    try:
        async with engine.begin() as conn:
            # the API answers the key's id dashed; the gateway stores its 32-hex form
            stored = uuid.UUID(key_id_).hex
            done = await conn.execute(table.update().where(table.c.id == stored).values(expires_at=when))
            assert done.rowcount == 1
    finally:
        await engine.dispose()


async def test_api_keys_expire_are_revoked_and_stay_in_scope(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as gw:
        admin = await _admin(gw)
        body = {"name": "Partner CRM", "role": "partner", "scopes": ["GET /api/projects/*"], "expires_in_days": 30}

        # what an admin may not mint
        for bad, why in (
            ({**body, "role": "admin"}, "admin role"),
            ({k: v for k, v in body.items() if k != "expires_in_days"}, "no expiry"),
            ({**body, "expires_in_days": 3650}, "beyond the limit"),
            ({k: v for k, v in body.items() if k != "scopes"}, "no scope"),
            ({**body, "scopes": []}, "empty scope"),
        ):
            refused = await gw.post("/auth/api-keys", json=bad, headers=admin)
            assert refused.status_code == 422, (why, refused.text)

        issued = await gw.post("/auth/api-keys", json=body, headers=admin)
        assert issued.status_code == 201, issued.text
        key = {"X-API-Key": issued.json()["key"]}
        assert await _all(gw, "GET", "/api/projects/projects", key) == [200] * 6
        # the same key as a bearer (how a Prometheus scrape sends one)
        assert (
            await gw.get("/api/projects/projects", headers={"Authorization": f"Bearer {key['X-API-Key']}"})
        ).status_code == 200

        # outside its scopes: 403 although the partner role may read the register
        outside = await gw.get("/api/membership/organisations", headers=key)
        assert outside.status_code == 403 and "scopes" in outside.json()["message"]
        assert (await gw.post("/api/projects/projects", json={}, headers=key)).status_code == 403

        # revoked: refused by every worker within seconds
        revoked = await gw.delete(f"/auth/api-keys/{issued.json()['id']}", headers=admin)
        assert revoked.status_code == 200
        await wait_for(lambda: _refused_everywhere(gw, "/api/projects/projects", key), timeout=15, what="revoked")

        # expired: a key whose expiry has passed is refused (the expiry is moved into the past in the database)
        second = await gw.post("/auth/api-keys", json=body, headers=admin)
        assert second.status_code == 201
        key2 = {"X-API-Key": second.json()["key"]}
        assert (await gw.get("/api/projects/projects", headers=key2)).status_code == 200
        await _set_key_expiry(platform.database, second.json()["id"], datetime.now(UTC) - timedelta(minutes=1))

        async def expired_everywhere() -> bool:
            # each worker answers from its own short cache until it reads the row again: wait until
            # a round of fresh connections is refused, every refusal saying why
            answers = await _answers(gw, "GET", "/api/projects/projects", key2)
            return all(r.status_code == 401 and "expired" in r.json()["message"] for r in answers)

        await wait_for(expired_everywhere, timeout=15, what="expired")


async def _start_refused(env: dict[str, str], module: str) -> tuple[int | None, str]:
    """Start ``python -m module serve`` with ``env`` (and none of this session's secrets unless given).

    Returns its exit status and output once it exits; ``None`` as soon as it answers ``/healthz``
    instead (it started: the secret was accepted). No time limit decides either way.
    """
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_SIGNING_KEY", "_SECRET_KEY", "_ADMIN_PASSWORD"))}
    base.pop("DISTRETTO_TRUSTED_KEYS", None)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "serve",
        "--port",
        str(port),
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = asyncio.ensure_future(proc.communicate())
    async with httpx.AsyncClient() as client:
        while not output.done():
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz", timeout=1)).status_code == 200:
                    proc.kill()
                    await output
                    return None, "it started: the secret was accepted"
            except httpx.HTTPError:
                pass
            await asyncio.wait({output}, timeout=0.5)
    out, _ = output.result()
    return proc.returncode, out.decode(errors="replace")


async def test_weak_or_missing_secrets_stop_the_start(tmp_path: Any, kafka_bootstrap: str) -> None:
    keys = {
        "DISTRETTO_TRUSTED_KEYS": os.environ["DISTRETTO_TRUSTED_KEYS"],
        "DISTRETTO_DATA_DIR": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    newsletter = {**keys, "NEWSLETTER_SIGNING_KEY": KEYRING.private_keys["newsletter"]}
    gateway = {**keys, "GATEWAY_SIGNING_KEY": KEYRING.private_keys["gateway"]}
    cases = {
        "published link key": ("newsletter", {**newsletter, "NEWSLETTER_SECRET_KEY": "change-me-newsletter-secret"}),
        "short link key": ("newsletter", {**newsletter, "NEWSLETTER_SECRET_KEY": "s3cr3t"}),
        "no link key": ("newsletter", newsletter),
        "published admin password": ("gateway", {**gateway, "GATEWAY_ADMIN_PASSWORD": "distretto-admin"}),
        "no gateway signing key": ("gateway", {**keys, "GATEWAY_ADMIN_PASSWORD": "a-long-enough-password"}),
        "no trusted keys": ("membership", {"MEMBERSHIP_SIGNING_KEY": KEYRING.private_keys["membership"]}),
    }
    expected = {
        "published link key": "NEWSLETTER_SECRET_KEY",
        "short link key": "NEWSLETTER_SECRET_KEY",
        "no link key": "NEWSLETTER_SECRET_KEY is not set",
        "published admin password": "GATEWAY_ADMIN_PASSWORD",
        "no gateway signing key": "GATEWAY_SIGNING_KEY",
        "no trusted keys": "DISTRETTO_TRUSTED_KEYS",
    }
    for name, (module, env) in cases.items():  # one at a time: six imports at once crowd a small machine
        code, output = await _start_refused(env, module)
        assert code == 2, (name, code, output[-2000:])
        assert "refuses to start" in output and expected[name] in output, (name, output[-2000:])


async def test_development_mode_accepts_a_missing_secret(tmp_path: Any, kafka_bootstrap: str) -> None:
    """DISTRETTO_DEV_MODE=true (never the default) lets a developer start without generating secrets."""
    from distretto_dev.testing import ServiceProcess

    env = {
        "DISTRETTO_DEV_MODE": "true",
        "NEWSLETTER_SECRET_KEY": "",
        "DISTRETTO_DATA_DIR": str(tmp_path),
        "NEWSLETTER_SMTP_SERVERS": "127.0.0.1:1",
        "DISTRETTO_TOPIC_PREFIX": f"dev{os.urandom(4).hex()}.",
    }
    proc = await ServiceProcess("newsletter", env=env, log_path=tmp_path / "newsletter.log").start(timeout=90)
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(proc.url + "/healthz")).status_code == 200
    finally:
        proc.stop()
    assert "development mode" in (tmp_path / "newsletter.log").read_text()


async def test_signing_key_rotation_honours_not_after(database: DatabaseTarget) -> None:
    """A new key signs; tokens and credentials of the old one are accepted until its ``not_after``, not after."""
    from gateway.app import create_app
    from gateway.config import Settings

    old_private, old_public = generate_keypair()
    new_private, new_public = generate_keypair()
    old_kid, new_kid = key_id(old_public), key_id(new_public)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    def settings(signing: str, trusted: list[dict[str, str]]) -> Settings:
        return Settings(
            database_url=database.url,
            database_schema=database.schema,
            kafka_bootstrap_servers="127.0.0.1:1",
            create_topics=False,
            signing_key=signing,
            trusted_keys=json.dumps(trusted),
            admin_email="rotation@security.example",
            admin_password="rotation-admin-password",
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
        )

    async def me(s: Settings, token: str) -> httpx.Response:
        async with service_client(create_app(s)) as client:
            return await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})

    before = settings(old_private, [trusted_key_entry(old_kid, "gateway", old_public)])
    async with service_client(create_app(before)) as client:
        login_body = {"email": "rotation@security.example", "password": "rotation-admin-password"}
        old_token = (await client.post("/auth/token", json=login_body)).json()["access_token"]
    assert jwt.get_unverified_header(old_token)["kid"] == old_kid

    during = settings(
        new_private,
        [
            trusted_key_entry(old_kid, "gateway", old_public, tomorrow),
            trusted_key_entry(new_kid, "gateway", new_public),
        ],
    )
    assert (await me(during, old_token)).status_code == 200  # still within the old key's not_after
    async with service_client(create_app(during)) as client:
        new_token = (await client.post("/auth/token", json=login_body)).json()["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid  # new tokens use the new key

    after = settings(
        new_private,
        [
            trusted_key_entry(old_kid, "gateway", old_public, yesterday),
            trusted_key_entry(new_kid, "gateway", new_public),
        ],
    )
    late = await me(after, old_token)
    assert late.status_code == 401 and "retired key" in late.json()["message"]
    assert (await me(after, new_token)).status_code == 200

    # the services apply the same dates to the credentials the gateway mints for them
    from distretto_shared.identity import TokenSigner

    old_signer = TokenSigner.from_pem("gateway", old_kid, old_private)
    credential = old_signer.mint(Principal(id="user:x", role="staff"), "membership")
    trusting = Verifier("membership", parse_trusted_keys(during.trusted_keys))
    assert trusting.verify(credential).id == "user:x"
    retired = Verifier("membership", parse_trusted_keys(after.trusted_keys))
    with pytest.raises(Exception, match="no longer trusted"):
        retired.verify(credential)
