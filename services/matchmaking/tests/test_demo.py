"""The demo loader against the service run as a real process: it loads, and a second run adds nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from distretto_dev.testing import ADMIN, ServiceProcess, identity_headers
from matchmaking import demo


async def test_demo_is_idempotent(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str) -> None:
    env = {
        "MATCHMAKING_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'mm.db'}",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_TOPIC_PREFIX": topic_prefix,
    }
    process = ServiceProcess("matchmaking", env=env, log_path=tmp_path / "service.log")
    await process.start()
    try:
        first = await asyncio.to_thread(demo.load, process.url, None, 0.0, identity_headers(ADMIN, "matchmaking"))
        assert first["opportunities"] == len(demo.OPPORTUNITIES)
        assert first["matches"] > 0  # technology offers meet the matching requests
        second = await asyncio.to_thread(demo.load, process.url, None, 0.0, identity_headers(ADMIN, "matchmaking"))
        assert second == {"opportunities": 0, "matches": 0}
        async with process.client() as client:
            assert (await client.get("/opportunities")).json()["total"] == len(demo.OPPORTUNITIES)
            matches = (await client.get("/matches")).json()
            assert matches["total"] == first["matches"]
            assert all(m["explanation"]["summary"] for m in matches["items"])
    finally:
        process.stop()
