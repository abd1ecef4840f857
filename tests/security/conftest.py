"""A platform of real processes for the security probes: the four services and the gateway.

Every process is started as ``docker-compose.yml`` and ``make up`` start them (``python -m
<service> serve``) with the test session's keys (the plugin's key ring) and random secrets.
The gateway runs two uvicorn workers, so what one worker learns (a demoted user, a revoked
key) has to reach the other through the database, as in production. Its database is SQLite
or PostgreSQL (the fixture is parametrised); the services keep theirs on SQLite.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from distretto_dev.testing import (
    POSTGRES_ENV,
    DatabaseTarget,
    ServiceProcess,
    drop_schema,
    free_port,
    start_processes,
    stop_processes,
    wait_for,
)

SERVICES = ("membership", "projects", "newsletter", "matchmaking", "partners")
ADMIN = {"email": "admin@security.example", "password": secrets.token_urlsafe(16)}


@dataclass
class Platform:
    """The running processes and how to reach them."""

    gateway: str
    services: dict[str, str]
    database: DatabaseTarget
    root: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def gateway_env(self) -> dict[str, str]:
        """The gateway's environment (for a second gateway process in front of the same services)."""
        return dict(self.processes["gateway"].env)


def gateway_environment(database: DatabaseTarget, services: dict[str, str], **extra: str) -> dict[str, str]:
    """How the tests run a gateway: cheap password hashing, generous limits, the services given."""
    env = {
        "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
        "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
        "GATEWAY_ARGON2_TIME_COST": "1",
        "GATEWAY_ARGON2_MEMORY_KIB": "1024",
        "GATEWAY_ARGON2_PARALLELISM": "1",
        "GATEWAY_LOGIN_RATE_LIMIT_BURST": "10000",
        "GATEWAY_RATE_LIMIT_BURST": "10000",
        "GATEWAY_ANONYMOUS_RATE_LIMIT_BURST": "10000",
        "GATEWAY_API_KEY_CACHE_SECONDS": "1",
        "GATEWAY_LOG_LEVEL": "WARNING",
        **database.env("GATEWAY"),
        **{f"GATEWAY_{name.upper()}_URL": url for name, url in services.items()},
    }
    env.update(extra)
    return env


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(url + "/readyz", timeout=3)).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def platform(
    request: pytest.FixtureRequest, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    """The five services and a two-worker gateway, each a real process, on the session's broker."""
    backend = request.param
    root = tmp_path_factory.mktemp(f"security-{backend}")
    if backend == "sqlite":
        database = DatabaseTarget("sqlite", f"sqlite+aiosqlite:///{root / 'gateway.db'}")
    else:
        url = os.environ.get(POSTGRES_ENV)
        if not url:
            if os.environ.get("DISTRETTO_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"{POSTGRES_ENV} is not set but DISTRETTO_REQUIRE_POSTGRES=1")
            pytest.skip(f"PostgreSQL variant needs {POSTGRES_ENV} (make test sets it up)")
        database = DatabaseTarget("postgresql", url, f"t_{uuid.uuid4().hex[:12]}")
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_TOPIC_PREFIX": f"sec{uuid.uuid4().hex[:8]}.",
        "DISTRETTO_DATA_DIR": str(root / "data"),
    }
    ports = {name: free_port() for name in (*SERVICES, "gateway")}
    services = {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICES}
    extra: dict[str, dict[str, Any]] = {
        "newsletter": {"NEWSLETTER_MEMBERSHIP_URL": services["membership"], "NEWSLETTER_SMTP_SERVERS": "127.0.0.1:1"},
        "gateway": gateway_environment(database, services, GATEWAY_WORKERS="2"),
    }
    platform = Platform(f"http://127.0.0.1:{ports['gateway']}", services, database, root)
    try:
        for name in (*SERVICES, "gateway"):
            platform.processes[name] = ServiceProcess(
                name, port=ports[name], env={**common, **extra.get(name, {})}, log_path=root / f"{name}.log"
            )
        await start_processes(list(platform.processes.values()), timeout=90)
        for name in SERVICES:
            await wait_for(lambda n=name: _ready(services[n]), timeout=90, interval=0.3, what=f"{name} ready")
        yield platform
    finally:
        stop_processes(list(platform.processes.values()))
        if database.schema:
            await drop_schema(database.url, database.schema)


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    """Authorization headers for a user, from the gateway's POST /auth/token."""
    response = await client.post("/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def new_user(
    client: httpx.AsyncClient, admin: dict[str, str], role: str, **extra: Any
) -> tuple[str, dict[str, str]]:
    """A fresh user with ``role`` (unique email): its id and Authorization headers."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@security.example"
    password = secrets.token_urlsafe(16)
    created = await client.post(
        "/auth/users", json={"email": email, "password": password, "role": role, **extra}, headers=admin
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], await login(client, email, password)
