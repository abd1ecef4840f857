"""The service is SIGKILLed mid-campaign and restarted: every recipient gets exactly one mail."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from distretto_shared.db import Database
from distretto_shared.testing import DatabaseTarget, ServiceProcess

from .conftest import SmtpSink, wait_until

RECIPIENTS = 60


def env_for(database: DatabaseTarget, kafka_bootstrap: str, sink: SmtpSink, tmp_path: Path) -> dict[str, str]:
    return {
        **database.env("NEWSLETTER"),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_DATA_DIR": str(tmp_path / "data"),
        "NEWSLETTER_SMTP_SERVERS": f"127.0.0.1:{sink.port}",
        "NEWSLETTER_SMTP_CONNECTIONS_PER_SERVER": "3",
        "NEWSLETTER_CLAIM_BATCH": "5",
        "NEWSLETTER_LEASE_SECONDS": "2",
        "NEWSLETTER_SCHEDULER_INTERVAL": "0.2",
        "NEWSLETTER_DELIVERY_POLL_INTERVAL": "0.05",
        "NEWSLETTER_LOG_LEVEL": "WARNING",
    }


async def ledger(database: DatabaseTarget) -> Counter[str]:
    db = Database(database.url, schema=database.schema)
    try:
        async with db.read() as session:
            rows = await session.execute(sa.text("SELECT status, count(*) FROM delivery GROUP BY status"))
            return Counter({r[0]: r[1] for r in rows})
    finally:
        await db.dispose()


async def test_sigkill_mid_campaign_then_restart_sends_each_recipient_exactly_once(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink, tmp_path: Path
) -> None:
    sink.delay = 0.02
    env = env_for(database, kafka_bootstrap, sink, tmp_path)
    first = await ServiceProcess("newsletter", env=env, log_path=tmp_path / "first.log").start()
    try:
        async with first.client(timeout=30) as client:
            assert (await client.post("/lists", json={"slug": "all", "name": "All"})).status_code == 201
            emails = [f"r{i:03d}@example.org" for i in range(RECIPIENTS)]
            for e in emails:
                r = await client.post("/subscribers", json={"email": e, "lists": ["all"], "preconfirmed": True})
                assert r.status_code == 201, r.text
            r = await client.post(
                "/templates",
                json={"name": "t", "subject": "Hi", "body_html": "<p>{{ subscriber.email }}</p>", "body_text": "x"},
            )
            tpl = r.json()["id"]
            r = await client.post(
                "/campaigns", json={"name": "c", "subject": "Hi", "template_id": tpl, "lists": ["all"]}
            )
            cid = r.json()["id"]
            assert (await client.post(f"/campaigns/{cid}/start")).json()["recipients"] == RECIPIENTS

            await wait_until(lambda: len(sink.received) >= 15, what="the campaign under way")
            # Park every connection mid-transaction (RCPT accepted nothing yet), then kill: the worst
            # moment that is not the documented 250-before-commit window.
            sink.hold()
            await wait_until(lambda: sink.parked >= 3, what="all three connections mid-transaction")
    finally:
        first.kill()
    sink.release()
    at_kill = await ledger(database)
    delivered_at_kill = len(sink.received)
    assert at_kill["sending"] >= 3, at_kill  # claimed rows were in flight when the process died
    assert at_kill["sent"] == delivered_at_kill < RECIPIENTS

    second = await ServiceProcess("newsletter", env=env, log_path=tmp_path / "second.log").start()
    try:
        async with second.client(timeout=30) as client:

            async def finished() -> bool:
                r = await client.get(f"/campaigns/{cid}")
                return bool(r.json()["status"] == "finished")

            await wait_until(finished, timeout=90, what="campaign finished after the restart")
            stats = (await client.get(f"/campaigns/{cid}")).json()["stats"]
    finally:
        second.stop()
    counts = sink.count_by_rcpt()
    assert counts == {e: 1 for e in emails}, {e: n for e, n in counts.items() if n != 1}
    assert stats["sent"] == RECIPIENTS and stats["sending"] == 0 and stats["pending"] == 0
    # every message carried its deterministic id exactly once
    assert len({r.message["Message-ID"] for r in sink.received}) == RECIPIENTS
