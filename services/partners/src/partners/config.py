"""Settings of the partners service (env prefix ``PARTNERS_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from distretto_shared.sealing import Sealer
from distretto_shared.secrets import Secret
from distretto_shared.settings import ServiceSettings

WEBHOOK_SECRET_PURPOSE = "partners.webhook-signing-secret"
"""The label the webhook secrets' encryption key is derived under (changing it loses them)."""


class Settings(ServiceSettings):
    """Partners service settings."""

    model_config = SettingsConfigDict(env_prefix="PARTNERS_", extra="ignore")
    secret_settings = (
        Secret("secret_key", what="encrypts the webhook signing secrets in the database"),
        Secret("notice_smtp_password", required=False, min_length=12, what="the SMTP relay's password"),
    )

    secret_key: str = ""
    """This installation's key (``PARTNERS_SECRET_KEY``, 32+ random characters, no default): the
    webhook signing secrets are stored encrypted under a key derived from it. Lose it and every
    endpoint needs a new secret (rotate); change it only together with ``secret_key_previous``."""
    secret_key_previous: str = ""
    """While changing ``secret_key``: the old one, so secrets sealed under it still open (each is
    sealed again under the new key at its next rotation)."""

    http_port: int = 8006

    # --- server-sent events
    stream_heartbeat_seconds: float = 15.0
    """A comment line is sent after this long without events, so proxies keep the stream open."""
    stream_batch_size: int = 100
    """Events read from the log per query; a client's stream holds at most one batch in memory."""
    stream_poll_seconds: float = 1.0
    """How often a stream looks at the log when no commit in this process woke it."""

    # --- Kafka, direct
    kafka_partner_bootstrap: str = ""
    """The broker address partners are told to connect to (empty: the service's own)."""
    kafka_admin_timeout_seconds: float = 15.0
    """How long creating or removing a partner's Kafka user and ACLs may take before it is refused."""

    # --- webhooks
    webhook_retry_schedule: list[float] = [5, 300, 1800, 7200, 18000, 36000]
    """Seconds before each retry of a failed delivery (JSON list in the environment); after the
    last one the message is marked failed and the endpoint moves on."""
    webhook_disable_after_seconds: float = 86400.0
    """An endpoint failing without a single success for this long is disabled."""
    webhook_secret_overlap_seconds: float = 86400.0
    """After a rotation the previous signing secret still signs (beside the new one) this long."""
    webhook_timeout_seconds: float = 15.0
    """Time allowed for an endpoint's answer."""
    webhook_workers: int = 2
    """Delivery workers in this process (more processes may run on the same database)."""
    webhook_lease_seconds: float = 60.0
    """How long a worker owns an endpoint without renewing (a crashed worker's endpoints free up after it)."""
    webhook_poll_seconds: float = 1.0
    webhook_require_https: bool = True
    """Refuse endpoint URLs that are not https:// (turn off only for local receivers)."""
    webhook_allow_private_addresses: bool = False
    """Refuse endpoint URLs whose host is (or resolves to) a loopback, private, link-local, shared,
    multicast or reserved address — checked when the endpoint is saved and again before each
    delivery. Turn on only where receivers run inside the foundation's own network (or in tests)."""

    # --- notices to partners (the platform's SMTP relay, the same one the newsletter uses)
    notice_smtp_server: str = "127.0.0.1:1025"
    """host:port of the SMTP relay a partner's notices go through (an endpoint disabled)."""
    notice_smtp_username: str = ""
    notice_smtp_password: str = ""
    notice_smtp_starttls: bool = False
    notice_smtp_timeout: float = 30.0
    notice_from: str = "partners@distretto.example"
    notice_retry_seconds: float = 300.0
    """A notice the relay did not take is tried again after this long."""

    def webhook_sealer(self) -> Sealer:
        """Seals and opens the webhook signing secrets kept in the database."""
        return Sealer(WEBHOOK_SECRET_PURPOSE, self.secret_key, self.secret_key_previous)
