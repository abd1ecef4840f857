"""Settings shared by every service.

Each service subclasses :class:`ServiceSettings` and sets its own env prefix
(``MEMBERSHIP_``, ``NEWSLETTER_`` …). ``KAFKA_BOOTSTRAP_SERVERS`` without a
prefix is honoured by every service, so one variable points the whole platform
at a broker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from distretto_shared.kafka_security import KafkaCredentials
from distretto_shared.secrets import Secret


def _default_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def default_data_dir() -> Path:
    """Folder for SQLite files and other local state (``DISTRETTO_DATA_DIR``, default ``./var``)."""
    return Path(os.environ.get("DISTRETTO_DATA_DIR", "var"))


class ServiceSettings(BaseSettings):
    """Settings every service has; subclass and set ``model_config`` with an env prefix."""

    model_config = SettingsConfigDict(env_prefix="DISTRETTO_", extra="ignore", populate_by_name=True)

    service_name: str = "service"
    database_url: str = ""
    """SQLAlchemy async URL; empty means a SQLite file ``<data dir>/<service>.db``."""
    database_schema: str | None = None
    """PostgreSQL schema to use (search_path); lets services share one database safely."""
    kafka_bootstrap_servers: str = Field(default_factory=_default_bootstrap)
    kafka_security_protocol: str = Field(default_factory=lambda: os.environ.get("KAFKA_SECURITY_PROTOCOL", ""))
    """``PLAINTEXT``, ``SASL_PLAINTEXT`` or ``SASL_SSL``; empty: SASL_PLAINTEXT when a user name is set."""
    kafka_sasl_mechanism: str = Field(default_factory=lambda: os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"))
    kafka_sasl_username: str = Field(default_factory=lambda: os.environ.get("KAFKA_SASL_USERNAME", ""))
    """This service's Kafka user (``<PREFIX>_KAFKA_SASL_USERNAME``, else ``KAFKA_SASL_USERNAME``)."""
    kafka_sasl_password: str = Field(default_factory=lambda: os.environ.get("KAFKA_SASL_PASSWORD", ""))
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_shutdown_grace: float = Field(default=5.0, gt=0)
    """Seconds a stopping server waits for requests still open before it cancels them and stops the
    service. A partner's event stream never ends by itself: without a bound, a stop would wait for
    it until the process is killed (its client reconnects with ``Last-Event-ID`` and loses nothing)."""
    log_level: str = "INFO"
    log_json: bool = True
    log_repeat_interval: float = Field(default=30.0, ge=0)
    """Seconds between two writes of the same Kafka-library log line (same logger and message
    template): while the broker is away aiokafka repeats its errors about every 100 ms per client;
    the lines in between are left out, counted in ``distretto_log_records_suppressed_total``, and
    the next one written says how many (``suppressed``). 0 writes every one."""
    relay_poll_interval: float = 1.0
    relay_standby_interval: float = 1.0
    """Seconds between two tries of the outbox lock by an instance whose relay stands by: when the
    active instance dies (its database session ends), another relays within about this long."""
    kafka_retry_backoff_max: float = 2.0
    """Longest pause, in seconds, between two attempts to reach the broker (the first connection, the
    relay's publishing): a broker back from a restart is used within this long of being ready."""
    relay_batch_size: int = 500
    relay_retention_seconds: float = 0.0
    """How long published outbox rows are kept (for audit), pruned in batches; 0 (the default) deletes
    each row once the broker acknowledged it. The events themselves stay on their topics (most are
    kept forever); keeping the rows too costs PostgreSQL about as much CPU again per event as the
    relay's delete (an UPDATE writes a new row version and an entry in each of the table's three
    indexes), measured with ``bench/backbone/run.py --relay-retention``."""
    consumer_max_attempts: int = 5
    consumer_backoff_initial: float = 0.2
    consumer_backoff_max: float = 5.0
    create_topics: bool = True
    erasure_scrub_delay: float = 1.0
    """Seconds between an erasure's commit and the on-disk scrub (erasures within it share one)."""

    dev_mode: bool = Field(default=False, validation_alias=AliasChoices("DISTRETTO_DEV_MODE"))
    """``DISTRETTO_DEV_MODE``: accept missing or weak secrets (random ones are made up for the
    process). Off by default; never on a machine that holds real data."""
    secret_settings: ClassVar[tuple[Secret, ...]] = ()
    """The fields that are secrets: checked at start-up (:mod:`distretto_shared.secrets`)."""

    # Identity (see distretto_shared.identity). No defaults: `make up` generates them.
    signing_key: str = ""
    """This process's Ed25519 private key (PEM), ``<PREFIX>_SIGNING_KEY``: it mints the credentials the
    service presents when it calls another service. Empty: the service calls no other service."""
    trusted_keys: str = Field(default="", validation_alias=AliasChoices("DISTRETTO_TRUSTED_KEYS"))
    """``DISTRETTO_TRUSTED_KEYS``: JSON list of ``{kid, issuer, public_key, not_after?}`` — whose
    credentials this service accepts. Required: a service without it refuses to start."""
    metrics_allowed_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        validation_alias=AliasChoices("DISTRETTO_METRICS_ALLOWED_ADDRESSES"),
    )
    """Client addresses or networks (``10.0.0.0/24``) that may scrape ``/metrics`` without a credential
    (the Prometheus server's); everyone else needs an ``operator`` or ``admin`` principal."""
    max_body_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, validation_alias=AliasChoices("DISTRETTO_MAX_BODY_BYTES")
    )
    """Request bodies larger than this get 413 before they are read whole."""

    def kafka_credentials(self) -> KafkaCredentials:
        """How this service connects to Kafka (:mod:`distretto_shared.kafka_security`)."""
        return KafkaCredentials.of(
            self.kafka_sasl_username, self.kafka_sasl_password, self.kafka_security_protocol, self.kafka_sasl_mechanism
        )

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file per service."""
        if self.database_url:
            return self.database_url
        data_dir = default_data_dir()
        data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{data_dir / (self.service_name + '.db')}"
