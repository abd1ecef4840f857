"""The bounce webhook: only the provider's signed reports count; known and unknown addresses look alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from distretto_dev.testing import DatabaseTarget, service_client
from newsletter.app import create_app

from .conftest import SmtpSink, add_subscriber, make_settings, post_bounce, setup_list, signed_headers


async def _bounces(app: Any) -> int:
    async with app.state.ctx.db.read() as session:
        return int((await session.execute(sa.text("SELECT count(*) FROM bounce"))).scalar_one())


async def test_only_signed_fresh_reports_count_and_known_and_unknown_look_alike(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, sink))
    async with service_client(app) as client:
        await setup_list(client, "news")
        known = await add_subscriber(client, "known@example.org", ["news"])
        report = {"email": "known@example.org", "kind": "hard", "reason": "550 no such user"}
        body = json.dumps(report).encode()

        # No signature, a wrong secret, a tampered body, a stale or future timestamp: 401, nothing recorded.
        refused = [
            await client.post("/bounces", json=report),
            await client.post("/bounces", content=body, headers=signed_headers(body, secret="whsec_" + "A" * 40)),
            await client.post("/bounces", content=body.replace(b"hard", b"soft"), headers=signed_headers(body)),
            await client.post(
                "/bounces", content=body, headers=signed_headers(body, at=datetime.now(UTC) - timedelta(minutes=6))
            ),
            await client.post(
                "/bounces", content=body, headers=signed_headers(body, at=datetime.now(UTC) + timedelta(minutes=6))
            ),
        ]
        assert [r.status_code for r in refused] == [401] * 5, [r.text for r in refused]
        assert all(r.json()["message"] for r in refused)
        assert await _bounces(app) == 0
        assert (await client.get(f"/subscribers/{known['id']}")).json()["suppressed"] is False

        # Signed: a known and an unknown address get the very same answer.
        on_known = await post_bounce(client, report, msg_id="msg_known")
        on_unknown = await post_bounce(client, {**report, "email": "stranger@example.org"})
        assert (on_known.status_code, on_known.json()) == (on_unknown.status_code, on_unknown.json())
        assert on_known.status_code == 202 and "id" not in on_known.text
        assert (await client.get(f"/subscribers/{known['id']}")).json()["suppressed"] is True
        assert await _bounces(app) == 1

        # The same message again (a replay within the five minutes) changes nothing.
        again = await post_bounce(client, report, msg_id="msg_known")
        assert again.status_code == 202 and await _bounces(app) == 1

        # Signed but not a report: 422 with the reason.
        bad = json.dumps({"email": "known@example.org", "kind": "sideways"}).encode()
        r = await client.post("/bounces", content=bad, headers=signed_headers(bad))
        assert r.status_code == 422 and r.json()["message"]


async def test_without_a_configured_secret_the_webhook_takes_nothing(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, sink, bounce_webhook_secret=""))
    async with service_client(app) as client:
        await setup_list(client, "news")
        await add_subscriber(client, "known@example.org", ["news"])
        r = await post_bounce(client, {"email": "known@example.org", "kind": "hard"})
        assert r.status_code == 503 and "NEWSLETTER_BOUNCE_WEBHOOK_SECRET" in r.json()["message"]
        assert await _bounces(app) == 0
