"""Fixtures of the console's tests: a real gateway process to log in through, the console's settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from console.config import Settings
from distretto_dev.testing import DatabaseTarget, ServiceProcess, free_port

ADMIN = {"email": "admin@console.example", "password": "console-admin-password"}


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A real gateway process (its own SQLite); the services behind it are not running: they are "down"."""
    root = tmp_path_factory.mktemp("gateway")
    dead = f"http://127.0.0.1:{free_port()}"
    proc = ServiceProcess(
        "gateway",
        env={
            "DISTRETTO_DATA_DIR": str(root),
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "GATEWAY_CREATE_TOPICS": "false",
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            "GATEWAY_ARGON2_TIME_COST": "1",
            "GATEWAY_ARGON2_MEMORY_KIB": "1024",
            "GATEWAY_ARGON2_PARALLELISM": "1",
            "GATEWAY_LOGIN_RATE_LIMIT_PER_MINUTE": "100000",
            "GATEWAY_LOGIN_RATE_LIMIT_BURST": "10000",
            # the operations test's Prometheus scrapes this gateway from loopback
            "GATEWAY_METRICS_ALLOWED_ADDRESSES": '["127.0.0.1"]',
            **{f"GATEWAY_{n}_URL": dead for n in ("MEMBERSHIP", "PROJECTS", "NEWSLETTER", "MATCHMAKING", "CONSOLE")},
        },
        log_path=Path(root) / "gateway.log",
    )
    await proc.start()
    try:
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture
def settings(database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, gateway: str) -> Settings:
    """Settings of a console on this test's database and broker, in front of the test gateway."""
    return Settings(
        database_url=database.url,
        database_schema=database.schema,
        kafka_bootstrap_servers=kafka_bootstrap,
        gateway_url=gateway,
        stream_poll_seconds=0.1,
        consumer_backoff_initial=0.05,
        log_json=False,
    )
