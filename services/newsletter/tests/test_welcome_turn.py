"""A contact completed while its organisation's join is being handled still gets its welcome mail.

The join's handler and the contact fetcher run in different transactions (different consumer groups,
even different instances). On PostgreSQL, read committed, each could decide "the other one sends it":
the join selects the organisation's contacts before the new contact's row is committed, and the
fetcher completes that contact and reads the organisation before the join is committed. Seen once in
the cluster test (one contact of 24 never welcomed). They now take the organisation's welcome turn.
"""

from __future__ import annotations

import asyncio
from datetime import date

import httpx
import pytest
import sqlalchemy as sa

from distretto_dev.testing import DatabaseTarget, service_client
from distretto_shared.contracts import membership
from distretto_shared.db import Database
from newsletter.app import create_app
from newsletter.context import Ctx
from newsletter.delivery.models import Delivery
from newsletter.members import service as members_service

from .conftest import SmtpSink, make_settings, wait_until
from .test_consumers import contact, membership_api, profile

TURN_WAITERS = sa.text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(:key, 0)"
)


async def join_while_the_contact_completes(
    joining: Database, db: Database, ctx: Ctx, members: httpx.AsyncClient
) -> None:
    """The join's unit of work held open (on a pool of its own, as another process would) while the
    contact's row is committed and the fetcher completes it."""
    joined = membership.OrganisationJoined(
        organisation_id="o-turn", profile=profile("o-turn", "Toscana Organoidi"), joined_on=date.today()
    )
    async with joining.transaction() as join:
        # The join is being handled: it has looked for the organisation's contacts (none yet) ...
        await members_service.organisation_joined(join, ctx, joined)
        # ... when the contact's row is committed by the other consumer group ...
        async with db.transaction() as added:
            await members_service.contact_changed(added, ctx, contact("c-turn", "o-turn", "giulia@org.example", True))
        # ... and the fetcher completes it: it must wait for the join's decision, not decide alone.
        fetch = asyncio.create_task(members_service.fetch_contact_details(ctx, client=members))

        async def waiting_or_done() -> bool:
            if fetch.done():
                return True
            async with db.read() as session:
                return bool((await session.execute(TURN_WAITERS, {"key": "newsletter.welcome:o-turn"})).scalar())

        await wait_until(waiting_or_done, what="the fetcher waiting for the join's turn")
        assert not fetch.done(), "the fetcher decided on the welcome while the join was undecided"
    assert await fetch == 1


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # SQLite runs one writer at a time
async def test_a_contact_completed_while_its_organisation_joins_is_welcomed(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    settings = make_settings(
        database, kafka_bootstrap, sink, membership_url="http://127.0.0.1:9", contact_fetch_interval=3600
    )
    app = create_app(settings)
    async with service_client(app), membership_api([]) as members_api:
        db = app.state.ctx.db
        joining = Database(settings.resolved_database_url(), schema=settings.database_schema)
        try:
            await join_while_the_contact_completes(joining, db, app.state.ctx.context(), members_api)
        finally:
            await joining.dispose()
        async with db.read() as session:
            welcome = Delivery.dedupe_key == "welcome:o-turn:c-turn"
            assert len((await session.execute(sa.select(Delivery.id).where(welcome))).all()) == 1
