"""Settings of the newsletter service (env prefix ``NEWSLETTER_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from distretto_shared.secrets import Secret
from distretto_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Everything the newsletter service can be told through its environment."""

    model_config = SettingsConfigDict(env_prefix="NEWSLETTER_", extra="ignore")
    secret_settings: ClassVar[tuple[Secret, ...]] = (
        Secret("secret_key", what="signs the confirmation, preference and unsubscribe links"),
        Secret("bounce_webhook_secret", required=False, what="the mail provider's webhook signing secret"),
        Secret("smtp_password", required=False, min_length=12, what="the SMTP relay's password"),
    )

    http_port: int = 8003

    secret_key: str = ""
    """HMAC key of confirmation, preference and unsubscribe links. No default: the service refuses to
    start without a strong one (``make up`` generates it)."""
    link_base_url: str = "http://127.0.0.1:8003"
    """Where the links in mails point (the service itself, or the gateway's route to it)."""
    confirm_ttl_hours: float = 48.0
    consent_wording_version: str = "2025-01"
    """Consent text version recorded when a sign-up does not name one."""
    trust_forwarded_for: bool = False
    """Take the client address from X-Forwarded-For (only behind the gateway)."""

    signup_limit_per_address: int = 3
    signup_limit_per_client: int = 20
    signup_window_seconds: int = 3600

    from_address: str = "newsletter@distretto.example"
    from_name: str = "Distretto Toscano Scienze della Vita"
    mail_domain: str = "distretto.example"
    """Right-hand side of Message-IDs and of the List-Id."""
    unsubscribe_mailto: str = "unsubscribe@distretto.example"

    smtp_servers: str = "127.0.0.1:1025"
    """Comma-separated host:port list; every server gets its own connection pool and rate limit."""
    smtp_connections_per_server: int = 4
    smtp_rate_per_second: float = 0.0
    """Token-bucket rate per SMTP server (0 = unlimited)."""
    smtp_burst: int = 50
    smtp_timeout: float = 30.0
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False

    delivery_enabled: bool = True
    claim_batch: int = 500
    freeze_chunk: int = 2000
    """Recipients frozen into the delivery ledger at a time: the start command freezes the first chunk,
    the engine the next ones while the frozen rows waiting to be sent fall below one chunk."""
    lease_seconds: float = 10.0
    """A claim not renewed for this long is taken back (its process died). Live workers renew theirs
    four times per lease, and send a message only while their lease is known held."""
    commit_linger_seconds: float = 0.04
    """The group committer waits at most this long after the first outcome so that one transaction
    records many sends: less as soon as every connection has reported, or a connection's next message
    waits for one of the outcomes before its ``DATA`` (so the linger never holds a connection up)."""
    delivery_poll_interval: float = 0.5
    max_attempts: int = 5
    retry_backoff_seconds: float = 30.0

    scheduler_interval: float = 2.0
    soft_bounce_limit: int = 3

    bounce_webhook_secret: str = ""
    """Standard Webhooks signing secret (``whsec_`` + base64) shared with the mail provider; no default:
    while unset, ``POST /bounces`` answers 503 and no report is taken."""
    bounce_webhook_provider: str = "provider"
    """Name recorded as the source of the bounces it reports."""

    members_list_slug: str = "members"
    """Private list of member contacts who consented to the newsletter (fed from membership events)."""
    membership_url: str = "http://127.0.0.1:8001"
    """The membership service, asked (as ``service:newsletter``) for a consenting contact's name and address."""
    contact_fetch_interval: float = 2.0
    """How often contacts whose details are due are fetched from membership."""
    welcome_window_days: int = 14
    """A contact added this long after its organisation's first join still gets the welcome mail."""
    digest_enabled: bool = True
    digest_interval_seconds: float = 7 * 24 * 3600.0
    digest_mode: str = "draft"
    """draft: the digest waits as a draft campaign; send: it starts at once."""
