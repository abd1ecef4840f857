"""Twenty "start" clicks on one campaign at the same moment: it starts once, its audience is frozen
once (a chunk at a time, the engine freezing the rest), one CampaignStarted, one mail per recipient.

The campaign is loaded with its row locked (``distretto_shared.db.load``), so the second request
sees "running" and is refused by the state machine (docs/architecture.md, "Concurrent writes").
Without the lock, on PostgreSQL, several starts would each freeze the audience.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from sqlalchemy import select

from distretto_dev.testing import DatabaseTarget, service_client
from distretto_shared.outbox import OutboxMessage
from newsletter.app import create_app

from .conftest import SmtpSink, add_subscriber, make_settings, setup_list, setup_template, wait_finished

CONCURRENT = 20


async def test_twenty_starts_of_one_campaign_start_it_once(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    # one recipient frozen at a time: the engine freezes the rest while the starts still arrive
    app = create_app(make_settings(database, kafka_bootstrap, sink, freeze_chunk=1))
    async with service_client(app) as client:
        await setup_list(client, "concorrenza")
        tpl = await setup_template(client)
        domain = f"{uuid.uuid4().hex[:8]}.concorrenza.example"  # the SMTP sink is the suite's: only ours count
        addresses = [f"socio{i}@{domain}" for i in range(3)]
        for address in addresses:
            await add_subscriber(client, address, ["concorrenza"])
        r = await client.post(
            "/campaigns", json={"name": "Once", "subject": "Once", "template_id": tpl["id"], "lists": ["concorrenza"]}
        )
        assert r.status_code == 201, r.text
        cid = r.json()["id"]

        responses = await asyncio.gather(*(client.post(f"/campaigns/{cid}/start") for _ in range(CONCURRENT)))

        codes = Counter(r.status_code for r in responses)
        assert codes == {200: 1, 409: CONCURRENT - 1}, [(r.status_code, r.text) for r in responses]
        for r in responses:
            if r.status_code == 409:
                assert r.json()["error"] == "conflict" and "cannot start" in r.json()["message"], r.text
        finished = await wait_finished(client, cid)
        assert finished["recipients"] == len(addresses)
        async with app.state.ctx.db.read() as session:
            types = list((await session.execute(select(OutboxMessage.event_type))).scalars())  # type: ignore[call-overload]
        assert types.count("distretto.newsletter.campaign.started.v1") == 1, types
        mine = {rcpt: n for rcpt, n in sink.count_by_rcpt().items() if rcpt.endswith("@" + domain)}
        assert mine == dict.fromkeys(addresses, 1), mine
