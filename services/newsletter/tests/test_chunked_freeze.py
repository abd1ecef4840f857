"""A campaign's audience is frozen into the ledger a chunk at a time: the start command freezes only the
first chunk (so the first mail does not wait for the whole audience), the engine the rest; everyone is
mailed once, the campaign finishes after the last chunk, and who is in the audience is settled: an
unsubscribe after the start is honoured (frozen already or not), someone who joins after it is not mailed.

The service here runs without its delivery engine, so that what the start command froze can be looked
at; an engine on the same database then sends the campaign, as another instance would.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from distretto_dev.testing import DatabaseTarget, service_client
from newsletter.app import create_app
from newsletter.campaigns import service as campaigns
from newsletter.campaigns.models import Campaign
from newsletter.delivery.engine import DeliveryEngine
from newsletter.links import links_for

from .conftest import (
    SmtpSink,
    add_subscriber,
    campaign_status,
    make_settings,
    setup_list,
    setup_template,
    wait_finished,
)

CHUNK = 2


async def _cursor(app: Any, campaign_id: str) -> str | None:
    async with app.state.ctx.db.read() as session:
        cursor: str | None = (
            await session.execute(sa.select(col(Campaign.freeze_after)).where(col(Campaign.id) == _hex(campaign_id)))
        ).scalar_one()
    return cursor


async def _ledger(client: Any, campaign_id: str) -> int:
    r = await client.get(f"/campaigns/{campaign_id}/deliveries")
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


async def _start(client: Any, lists: list[str]) -> dict[str, Any]:
    tpl = await setup_template(client)
    r = await client.post(
        "/campaigns", json={"name": "Chunks", "subject": "Chunks", "template_id": tpl["id"], "lists": lists}
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"/campaigns/{r.json()['id']}/start")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _hex(public_id: str) -> str:
    return public_id.replace("-", "")


async def test_the_start_freezes_one_chunk_and_the_engine_the_rest_one_mail_each(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    settings = make_settings(database, kafka_bootstrap, sink, delivery_enabled=False, freeze_chunk=CHUNK)
    app = create_app(settings)
    async with service_client(app) as client:
        await setup_list(client, "blocchi")
        domain = f"{uuid.uuid4().hex[:8]}.blocchi.example"  # the SMTP sink is the suite's: only ours count
        addresses = [f"socio{i}@{domain}" for i in range(7)]
        for address in addresses:
            await add_subscriber(client, address, ["blocchi"])

        started = await _start(client, ["blocchi"])
        cid = started["id"]
        # the whole audience counted, only the first chunk frozen
        assert (started["status"], started["recipients"]) == ("running", 7)
        assert await _ledger(client, cid) == CHUNK
        assert (await client.get(f"/campaigns/{cid}/recipients")).json()["recipients"] == 7
        # nothing is left to send of what is frozen, yet the campaign is not done
        assert await campaigns.finish_done_campaigns(app.state.ctx) == 0
        assert (await campaign_status(client, cid))["status"] == "running"

        engine = DeliveryEngine(app.state.ctx.db, settings.model_copy(update={"delivery_enabled": True}), source="/t")
        await engine.start()
        try:
            done = await wait_finished(client, cid)
        finally:
            await engine.stop()
        mine = {rcpt: n for rcpt, n in sink.count_by_rcpt().items() if rcpt.endswith("@" + domain)}
        assert mine == dict.fromkeys(addresses, 1), mine
        assert (done["recipients"], done["stats"]["sent"], done["stats"]["pending"]) == (7, 7, 0)
        assert await _ledger(client, cid) == 7
        assert await _cursor(app, cid) is None


async def test_an_unsubscribe_after_the_start_is_honoured_and_a_later_sign_up_waits_for_the_next_campaign(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    settings = make_settings(database, kafka_bootstrap, sink, delivery_enabled=False, freeze_chunk=CHUNK)
    app = create_app(settings)
    async with service_client(app) as client:
        await setup_list(client, "privacy")
        domain = f"{uuid.uuid4().hex[:8]}.privacy.example"
        people = [await add_subscriber(client, f"socio{i}@{domain}", ["privacy"]) for i in range(6)]

        started = await _start(client, ["privacy"])
        cid = started["id"]
        assert started["recipients"] == 6 and await _ledger(client, cid) == CHUNK
        cursor = await _cursor(app, cid)
        assert cursor is not None
        frozen = [p for p in people if _hex(p["id"]) <= cursor]
        waiting = sorted((p for p in people if _hex(p["id"]) > cursor), key=lambda p: _hex(p["id"]))
        assert len(frozen) == CHUNK and len(waiting) == 6 - CHUNK

        # one whose row is frozen already and one whose chunk is not yet frozen leave the list
        leaving = [frozen[0], waiting[-1]]
        for person in leaving:
            prefs = links_for(settings, person["id"])["preferences_url"].replace("http://service", "")
            r = await client.post(
                prefs, json={"lists": [], "unsubscribe_all": True}, headers={"accept": "application/json"}
            )
            assert r.status_code == 200, r.text
        # someone signs up after the start, with an id after the cursor (their chunk is not frozen yet)
        late = None
        for i in range(50):
            joined = await add_subscriber(client, f"nuovo{i}@{domain}", ["privacy"])
            if _hex(joined["id"]) > cursor:
                late = joined
                break
        assert late is not None

        engine = DeliveryEngine(app.state.ctx.db, settings.model_copy(update={"delivery_enabled": True}), source="/t")
        await engine.start()
        try:
            done = await wait_finished(client, cid)
        finally:
            await engine.stop()
        mine = {rcpt: n for rcpt, n in sink.count_by_rcpt().items() if rcpt.endswith("@" + domain)}
        assert mine == {p["email"]: 1 for p in people if p not in leaving}, mine
        # the ledger: every original recipient but the one who left before their chunk was frozen;
        # the one who left after it is skipped
        assert (done["recipients"], done["stats"]["sent"], done["stats"]["skipped"]) == (5, 4, 1), done
