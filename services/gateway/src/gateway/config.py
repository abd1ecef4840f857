"""Gateway settings (env prefix ``GATEWAY_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from distretto_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Where the services are, how identities are checked, how much each caller may do."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

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

    # Identity
    jwt_secret: str = "change-me-distretto-gateway-secret-at-least-32-bytes"
    jwt_issuer: str = "distretto-gateway"
    token_ttl_seconds: int = 3600
    admin_email: str = "admin@distretto.example"
    admin_password: str = ""
    """Bootstrap admin created at start-up when absent (nothing is created when empty)."""
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    token_cache_size: int = 10_000
    """Verified JWTs remembered per worker (LRU; each until it expires); 0 turns the cache off."""
    api_key_cache_seconds: float = 10.0
    """How long a resolved API key is trusted without asking the database (a revocation on
    another worker takes at most this long to bite; on the same worker it is immediate)."""

    # Rate limits (token bucket per principal, per client address for anonymous calls)
    rate_limit_enabled: bool = True
    rate_limit_per_minute: float = 600.0
    rate_limit_burst: int = 100
    anonymous_rate_limit_per_minute: float = 120.0
    anonymous_rate_limit_burst: int = 30
    login_rate_limit_per_minute: float = 10.0
    """POST /auth/token per client address: password guessing is slow and loud."""
    login_rate_limit_burst: int = 5

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
