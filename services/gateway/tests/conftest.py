"""Stand-in services (real uvicorn servers on free ports) and a gateway in front of them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
import uvicorn

from distretto_dev.testing import KEYRING, DatabaseTarget, free_port, service_client, wait_for
from distretto_shared.identity import Principal, Verifier, key_id, load_private_key, parse_trusted_keys, public_pem
from gateway.app import create_app
from gateway.config import Settings
from gateway.domain import CONSOLE, SERVICES


def principal_seen(echo: dict[str, Any]) -> Principal:
    """The caller a service behind the gateway would see: the credential in the echoed request,
    verified as that service verifies it (its audience, the installation's trusted keys)."""
    keys = parse_trusted_keys(os.environ["DISTRETTO_TRUSTED_KEYS"])
    return Verifier(audience=echo["service"], keys=keys).verify(echo["headers"]["x-distretto-identity"])


def user_token(claims: dict[str, Any], key: str | None = None, kid: str | None = None) -> str:
    """A user token as the gateway signs them (its test key unless ``key`` is given), with ``claims``
    over sensible defaults (audience, issuer, an hour of life)."""
    now = int(time.time())
    pem = key or KEYRING.private_keys["gateway"]
    body = {"iss": "gateway", "aud": "distretto", "iat": now, "exp": now + 3600, "sv": 1, **claims}
    return jwt.encode(body, load_private_key(pem), algorithm="EdDSA", headers={"kid": kid or key_id(public_pem(pem))})


async def my_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """The user id behind Authorization headers."""
    return str((await client.get("/auth/me", headers=headers)).json()["principal"]).removeprefix("user:")


ADMIN_EMAIL = "admin@gateway.test"
ADMIN_PASSWORD = "admin-password-1234"


def openapi_of(name: str) -> dict[str, Any]:
    """A small OpenAPI document; every service has an ``Organisation`` schema, so names clash."""
    ref = {"$ref": "#/components/schemas/Organisation"}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Distretto {name}", "version": "0.1.0"},
        "paths": {
            "/figures": {"get": {"operationId": "figures", "tags": ["figures"], "responses": {"200": {}}}},
            "/organisations": {
                "get": {"operationId": "list_organisations", "tags": ["organisations"], "responses": {"200": {}}},
                "post": {
                    "operationId": "apply",
                    "requestBody": {"content": {"application/json": {"schema": ref}}},
                    "responses": {"201": {"content": {"application/json": {"schema": ref}}}},
                },
            },
            "/organisations/{organisation_id}": {
                "get": {"operationId": "get_organisation", "responses": {"200": {}}},
            },
        },
        "components": {
            "schemas": {
                "Organisation": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "owner": {"$ref": "#/components/schemas/Owner"}},
                    "description": f"{name}'s organisation",
                },
                "Owner": {"type": "object"},
            }
        },
    }


class StandIn:
    """What a service looks like to the gateway: echo, slow, stream, health, OpenAPI."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = True

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        digest = hashlib.sha256()
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            size += len(chunk)
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/openapi.json":
            await self._json(send, 200, openapi_of(self.name))
        elif path == "/healthz":
            await self._json(send, 200, {"status": "ok", "service": self.name})
        elif path == "/readyz":
            await self._json(send, 200 if self.ready else 503, {"status": "ready" if self.ready else "not ready"})
        elif path == "/slow":
            await asyncio.sleep(3)
            await self._json(send, 200, {"slow": True})
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for i in range(200):
                await send({"type": "http.response.body", "body": f"{i:05d}".encode() * 2000, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            headers: dict[str, str] = {}
            for k, v in scope["headers"]:
                headers[k.decode()] = headers[k.decode()] + "," + v.decode() if k.decode() in headers else v.decode()
            await self._json(
                send,
                200,
                {
                    "service": self.name,
                    "method": scope["method"],
                    "path": path,
                    "raw_path": scope["raw_path"].decode(),
                    "query": scope["query_string"].decode(),
                    "headers": headers,
                    "body_bytes": size,
                    "body_sha256": digest.hexdigest(),
                },
                extra=[
                    (b"x-stand-in", self.name.encode()),
                    (b"connection", b"keep-alive, x-secret-hop"),
                    (b"x-secret-hop", b"must not pass"),
                ],
            )

    @staticmethod
    async def _json(send: Callable[..., Any], status: int, body: Any, extra: list[Any] | None = None) -> None:
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
                + (extra or []),
            }
        )
        await send({"type": "http.response.body", "body": data})


class Upstreams:
    """The running stand-ins: ``urls[name]``, ``apps[name]``."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self.apps: dict[str, StandIn] = {}


@pytest.fixture(scope="session")
async def upstreams() -> AsyncIterator[Upstreams]:
    """Stand-ins for the four services and the console on real sockets for the whole session."""
    ups = Upstreams()
    servers: list[uvicorn.Server] = []
    tasks = []
    for name in (*SERVICES, CONSOLE):
        port = free_port()
        app = StandIn(name)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve()))
        ups.urls[name] = f"http://127.0.0.1:{port}"
        ups.apps[name] = app
    async with httpx.AsyncClient() as client:
        for url in ups.urls.values():

            async def healthy(url: str = url) -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get(url + "/healthz")).status_code == 200
                return False

            await wait_for(healthy, what=f"{url} answering /healthz")
    yield ups
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


def gateway_settings(database: DatabaseTarget, upstreams: Upstreams, **overrides: Any) -> Settings:
    """Settings of a gateway in front of the stand-ins (cheap argon2, generous limits unless overridden)."""
    values: dict[str, Any] = {
        "database_url": database.url,
        "database_schema": database.schema,
        "kafka_bootstrap_servers": "127.0.0.1:1",  # the gateway publishes nothing; no broker needed
        "create_topics": False,
        "admin_email": ADMIN_EMAIL,
        "admin_password": ADMIN_PASSWORD,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "rate_limit_per_minute": 1_000_000,
        "rate_limit_burst": 100_000,
        "anonymous_rate_limit_per_minute": 1_000_000,
        "anonymous_rate_limit_burst": 100_000,
        "login_rate_limit_per_minute": 1_000_000,
        "login_rate_limit_burst": 100_000,
        "log_json": False,
        "log_level": "WARNING",
        "metrics_allowed_addresses": [],  # the in-process client comes from 127.0.0.1: no free pass
        **{f"{name}_url": url for name, url in upstreams.urls.items()},
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def sqlite_database(tmp_path: Any) -> DatabaseTarget:
    """A SQLite target for tests about the proxy path, where the database plays no part."""
    return DatabaseTarget("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app with its lifespan run, and a client talking to it."""
    async with service_client(create_app(settings)) as client:
        yield client


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    """Authorization headers for a user."""
    response = await client.post("/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    """Authorization headers of the bootstrap admin."""
    return await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)


async def create_user(client: httpx.AsyncClient, admin: dict[str, str], role: str, **extra: Any) -> dict[str, str]:
    """Create a user with ``role`` through the API; returns their Authorization headers."""
    email = f"{role}-{len(extra)}@gateway.test"
    password = f"{role}-password-1234"
    response = await client.post(
        "/auth/users", json={"email": email, "password": password, "role": role, **extra}, headers=admin
    )
    assert response.status_code == 201, response.text
    return await login(client, email, password)
