"""The group committer's linger: outcomes wait for more to share their commit only while no
connection waits for them (a message's DATA waits for the previous outcome of its connection)."""

from __future__ import annotations

import asyncio

from distretto_dev.testing import patience
from distretto_shared.db import Database
from newsletter.config import Settings
from newsletter.delivery.engine import DeliveryEngine
from newsletter.delivery.ledger import Outcome

from .conftest import LINK_SECRET

HOUR = 3600.0


def outcome(delivery_id: int) -> Outcome:
    return Outcome(
        delivery_id=delivery_id, token="t", kind="campaign", campaign_id="c", subscriber_id="s", status="sent"
    )


async def test_a_connection_waiting_for_its_commit_ends_the_linger() -> None:
    """With a linger of an hour and four connections, an outcome whose connection waits for it is
    handed to the commit at once: whether the connection started waiting during the linger, or
    before the committer took the outcome."""
    settings = Settings(
        smtp_servers="127.0.0.1:1",
        smtp_connections_per_server=4,
        commit_linger_seconds=HOUR,
        link_base_url="http://service",
        secret_key=LINK_SECRET,
    )
    db = Database("sqlite+aiosqlite://")
    engine = DeliveryEngine(db, settings, source="/t")
    try:
        first = engine._record([outcome(1)])
        lingering = asyncio.create_task(engine._queue_ready())
        waiting_first = asyncio.create_task(engine._durable(first))
        taken = await asyncio.wait_for(lingering, timeout=patience(30))  # a hang guard, far below the hour
        assert taken.delivery_id == 1

        second = engine._record([outcome(2)])
        waiting_second = asyncio.create_task(engine._durable(second))
        await asyncio.sleep(0)  # one turn of the loop: the connection is waiting before the committer looks
        taken = await asyncio.wait_for(engine._queue_ready(), timeout=patience(30))
        assert taken.delivery_id == 2

        assert not waiting_first.done() and not waiting_second.done()  # durable only once committed
        first.set_result(None)
        second.set_result(None)
        await asyncio.gather(waiting_first, waiting_second)
        assert not engine._awaited
    finally:
        await db.dispose()
