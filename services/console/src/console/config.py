"""Console settings (env prefix ``CONSOLE_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from distretto_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Where the gateway is, how long a browser session lives, which languages the pages speak."""

    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    http_port: int = 8005
    gateway_url: str = "http://127.0.0.1:8080"
    """The gateway's API, as the console's server calls it (every call carries the user's token)."""
    gateway_timeout: float = 10.0
    prometheus_url: str = "http://127.0.0.1:9090"
    """Prometheus' HTTP API, read by the operations page (readiness, lag, backlog, alerts)."""
    csrf_secret: str = ""
    """Signs the CSRF tokens of the forms; empty means a random key per process (forms open
    before a restart must be sent again). Set it when several console processes share users."""
    session_idle_minutes: int = 60
    token_refresh_before_seconds: int = 300
    """Swap the session's gateway token for a fresh one when it has less than this left."""
    """A browser session ends after this long without a request (and when the user's token expires)."""
    default_language: str = "it"
    languages: list[str] = ["it", "en"]
    signup_lists: list[str] = ["events", "calls", "personalised-medicine", "oncology", "rare-diseases"]
    """Slugs of the newsletter's public lists offered on the public sign-up page."""
    activity_keep: int = 2000
    """Events kept for the home page's feed (older ones are deleted)."""
    stream_poll_seconds: float = 1.0
    """How often a live page's event stream looks for new events."""
