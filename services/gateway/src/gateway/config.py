"""Gateway settings (env prefix ``GATEWAY_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from distretto_shared.secrets import Secret
from distretto_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Where the services are, how identities are checked, how much each caller may do."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")
    secret_settings: ClassVar[tuple[Secret, ...]] = (
        Secret("admin_password", required=False, min_length=12, what="the bootstrap admin's password"),
    )

    http_port: int = 8080
    workers: int = 1
    """uvicorn worker processes for ``serve`` (rate limits and caches are per worker)."""

    # Upstreams: /api/<name>/… goes to <name>_url with the prefix stripped.
    membership_url: str = "http://127.0.0.1:8001"
    projects_url: str = "http://127.0.0.1:8002"
    newsletter_url: str = "http://127.0.0.1:8003"
    matchmaking_url: str = "http://127.0.0.1:8004"
    partners_url: str = "http://127.0.0.1:8006"
    # --- the console (web pages at every path that is not the API's; see domain.is_console_path)
    console_url: str = "http://127.0.0.1:8005"
    """The console's base URL; it is not one of ``upstreams()`` (no OpenAPI, not in /readyz)."""
    # ---
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0
    pool_timeout: float = 5.0
    max_connections: int = 200
    max_keepalive_connections: int = 100
    trust_forwarded_for: bool = False
    """Take the client address from an incoming X-Forwarded-For (only behind a trusted proxy)."""

    # Identity. The gateway signs with its Ed25519 key (GATEWAY_SIGNING_KEY) — the credentials it
    # passes to the services and the tokens it gives to users alike; there is no shared secret.
    token_audience: str = "distretto"
    """``aud`` of the tokens users get from POST /auth/token (never a service's name, so a user
    token is no credential at a service, and a service credential is no user token here)."""
    token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    """Lifetime of a user's token; POST /auth/refresh gives a fresh one while the session is current."""
    session_refresh_seconds: float = Field(default=2.0, gt=0, le=30)
    """How often each worker re-reads every user's session version and active flag: a disabled,
    demoted or re-passworded user's tokens stop working within this long."""
    admin_email: str = "admin@distretto.example"
    admin_password: str = ""
    """Bootstrap admin created at start-up when absent (nothing is created when empty). No default:
    ``make up`` generates one per installation and prints it."""
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    token_cache_size: int = 10_000
    """Verified JWTs remembered per worker (LRU; each until it expires); 0 turns the cache off."""
    api_key_cache_seconds: float = 5.0
    """How long a resolved API key is trusted without asking the database (a revocation on
    another worker takes at most this long to bite; on the same worker it is immediate)."""
    api_key_max_days: int = Field(default=365, ge=1)
    """The longest life an API key may be given (every key has an expiry)."""

    # Rate limits (token bucket per principal, per client address for anonymous calls)
    rate_limit_enabled: bool = True
    rate_limit_per_minute: float = 600.0
    rate_limit_burst: int = 100
    anonymous_rate_limit_per_minute: float = 120.0
    anonymous_rate_limit_burst: int = 30
    login_rate_limit_per_minute: float = 10.0
    """POST /auth/token per client address: password guessing is slow and loud."""
    login_rate_limit_burst: int = 5
    # /healthz, /readyz and /metrics are never rate-limited with anonymous traffic: probes and
    # scrapes come from few addresses, and their answers are cached (readiness_cache_seconds).
    metrics_allowed_addresses: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices("GATEWAY_METRICS_ALLOWED_ADDRESSES", "DISTRETTO_METRICS_ALLOWED_ADDRESSES"),
    )
    """``GATEWAY_METRICS_ALLOWED_ADDRESSES`` (JSON list): addresses or networks that may read the gateway's
    /metrics without credentials. Empty by default — the gateway is the public entrance, and behind a
    reverse proxy every caller would look local — so a scraper presents an ``operator`` API key
    (``Authorization: Bearer dk_…`` or ``X-API-Key``). When it is not set, the platform-wide
    ``DISTRETTO_METRICS_ALLOWED_ADDRESSES`` applies (it has no default here either)."""
    readiness_cache_seconds: float = Field(default=1.0, ge=0)
    """The upstream checks behind /healthz and /readyz are shared by every caller for this long."""

    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS (JSON list in the environment); empty means no CORS headers."""

    openapi_cache_seconds: float = 30.0
    upstream_check_timeout: float = 3.0
    readyz_requires_upstreams: bool = True
    """/readyz answers 503 when a service is not ready (False: only the gateway's own database)."""

    def upstreams(self) -> dict[str, str]:
        """Service name → base URL."""
        return {
            "membership": self.membership_url.rstrip("/"),
            "projects": self.projects_url.rstrip("/"),
            "newsletter": self.newsletter_url.rstrip("/"),
            "matchmaking": self.matchmaking_url.rstrip("/"),
            "partners": self.partners_url.rstrip("/"),
        }
