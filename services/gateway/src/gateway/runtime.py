"""The gateway's running parts, built once per process: connection pools, the authenticator, the
rate limiters, the policy table and the caches (the request path is :mod:`gateway.proxy`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from prometheus_client import Counter

from distretto_shared import metrics
from distretto_shared.db import Database
from distretto_shared.identity import TokenSigner
from gateway.config import Settings
from gateway.domain import CONSOLE, PROBES, Policy, RateLimiter
from gateway.identify import Authenticator, Passwords
from gateway.models import Identity
from gateway.upstream import Upstream

UPSTREAM_ERRORS = Counter(
    "distretto_gateway_upstream_errors_total",
    "Upstream failures: refused (502), timeout (504), broken (502, or cut mid-response)",
    ["upstream", "kind"],
)


class Gateway:
    """The gateway's running parts: HTTP client pool, authenticator, limiters, policy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = Policy()
        self.upstreams = settings.upstreams()
        metrics.zero(UPSTREAM_ERRORS, self.upstreams, ("refused", "timeout", "broken", "cut"))
        self.started = False
        self.db: Database | None = None
        self.passwords: Passwords
        self.auth: Authenticator
        self.client: httpx.AsyncClient
        """For the cold paths (OpenAPI documents, health checks); proxied requests use ``targets``."""
        self.targets: dict[str, Upstream] = {}
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.anonymous_limiter = RateLimiter(
            settings.anonymous_rate_limit_per_minute, settings.anonymous_rate_limit_burst
        )
        self.login_limiter = RateLimiter(settings.login_rate_limit_per_minute, settings.login_rate_limit_burst)
        self.openapi_cache: tuple[float, dict[str, Any]] | None = None
        self.metrics_addresses = settings.metrics_allowed_addresses
        self.probe_cache: dict[str, tuple[float, asyncio.Future[dict[str, dict[str, Any]]]]] = {}
        """/healthz and /readyz upstream checks in flight or recent: probe path → (fresh until, result)."""
        self.signer: TokenSigner
        """Mints the credential each proxied request carries to its service."""

    def own_headers(self, service: str) -> dict[str, str]:
        """Headers for the gateway's own calls to ``service`` (OpenAPI documents)."""
        return self.signer.service_headers(service)

    async def start(self, db: Database, signer: TokenSigner) -> None:
        """Open the connection pools; build the authenticator on the service's database."""
        s = self.settings
        self.db = db
        self.signer = signer
        self.passwords = Passwords(s)
        self.auth = Authenticator(s, db, signer)
        await self.auth.sessions.start()
        pool_options = {
            "max_connections": s.max_connections,
            "max_idle": s.max_keepalive_connections,
            "connect_timeout": s.connect_timeout,
            "pool_timeout": s.pool_timeout,
            # below uvicorn's 5 s keep-alive, so we never reuse a socket the service is closing
            "keepalive_expiry": 4.0,
        }
        self.targets = {name: Upstream(name, url, pool_options) for name, url in self.upstreams.items()}
        # --- the console: paths go on unchanged (no /api/<name> prefix to strip)
        self.targets[CONSOLE] = Upstream(CONSOLE, s.console_url, pool_options, api_prefix=b"")
        # ---
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=s.connect_timeout, read=s.read_timeout, write=s.write_timeout, pool=s.pool_timeout
            ),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=8, keepalive_expiry=4.0),
            follow_redirects=False,
            trust_env=False,
        )
        self.started = True

    async def stop(self) -> None:
        """Close the connection pools."""
        if self.started:
            await self.auth.sessions.stop()
            for target in self.targets.values():
                target.close()
            await self.client.aclose()
            self.started = False

    def rate_limit(self, identity: Identity | None, client: str, method: str, path: str) -> tuple[float, str]:
        """Seconds to wait (0: go ahead) and the bucket that said so."""
        if path in PROBES and method in ("GET", "HEAD"):
            return 0.0, "probe"  # probes and scrapes are never starved by anonymous traffic
        now = time.monotonic()
        if method == "POST" and path == "/auth/token":
            wait = self.login_limiter.take(client, now)
            if wait:
                return wait, "login"
        if identity is not None:
            return self.limiter.take(identity.principal, now), "principal"
        return self.anonymous_limiter.take(client, now), "anonymous"
