"""Nineteen withdrawals of one opportunity and the expiry scan, all at the same moment: the opportunity
leaves the market once, with one event.

Use cases load the opportunity with its row locked (``distretto_shared.db.load``) and the expiry scan
selects the due opportunities ``FOR UPDATE``, so whichever comes first decides and the others meet its
result (docs/architecture.md, "Concurrent writes").
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import date
from typing import Any

from sqlalchemy import select

from distretto_dev.testing import service_client
from distretto_shared.contracts import matchmaking as contracts
from distretto_shared.outbox import OutboxMessage
from matchmaking.app import create_app
from matchmaking.config import Settings
from matchmaking.opportunities import service as opportunities

WITHDRAWALS = 19
ENDINGS = {contracts.OpportunityWithdrawn.event_type, contracts.OpportunityExpired.event_type}


async def test_concurrent_withdrawals_and_the_expiry_scan_end_an_opportunity_once(
    settings: Settings, topic_prefix: str, publish: Any
) -> None:
    app = create_app(settings)
    async with service_client(app) as client:
        offer = await publish(client)
        ctx = app.state.ctx.context()

        *responses, expired = await asyncio.gather(
            *(client.post(f"/opportunities/{offer['id']}/withdraw") for _ in range(WITHDRAWALS)),
            opportunities.expire_due(ctx, on=date(2100, 1, 1)),  # the scan, as if every expiry had passed
        )

        codes = Counter(r.status_code for r in responses)
        forms = {offer["id"], uuid.UUID(offer["id"]).hex, str(uuid.UUID(offer["id"]))}  # ids in any spelling
        expired = [o for o in expired if o in forms]
        winners = codes[200] + len(expired)
        assert winners == 1, (codes, expired)
        assert codes[409] == WITHDRAWALS - codes[200], [r.text for r in responses if r.status_code != 200]
        for r in responses:
            if r.status_code == 409:
                assert r.json()["error"] == "conflict" and "not active" in r.json()["message"], r.text
        final = (await client.get(f"/opportunities/{offer['id']}")).json()
        assert final["status"] == ("expired" if expired else "withdrawn")
        async with app.state.ctx.db.read() as session:
            rows = await session.execute(select(OutboxMessage.event_type, OutboxMessage.payload))  # type: ignore[call-overload]
            endings = [kind for kind, payload in rows if kind in ENDINGS and any(f in str(payload) for f in forms)]
        assert len(endings) == 1, endings
