"""Conflicting decisions on one organisation at the same moment: exactly one wins, one event.

Every use case loads the organisation with its row locked (``distretto_shared.db.load``: ``SELECT …
FOR UPDATE`` on PostgreSQL; SQLite's units of work run one at a time), so the state machine sees each
decision after the previous one committed (docs/architecture.md, "Concurrent writes"). Without the
lock, on PostgreSQL at READ COMMITTED, all twenty read "applied" and all twenty pass.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from typing import Any

import pytest

CONCURRENT = 20


async def _fire(membership: Any, requests: list[tuple[str, Any]]) -> list[Any]:
    """Send every request at once (each its own unit of work) and return the responses in order."""
    return list(await asyncio.gather(*(membership.http.post(path, json=body) for path, body in requests)))


@pytest.mark.parametrize(
    ("start", "actions"),
    [
        ("applied", ["approve", "reject"]),
        ("active", ["suspend", "lapse"]),
    ],
)
async def test_twenty_conflicting_decisions_one_wins_one_event(membership: Any, start: str, actions: list[str]) -> None:
    org = await membership.create(name=f"Contesa {start}")
    oid = org["id"]
    if start == "active":
        await membership.post(f"/organisations/{oid}/approve")
    history_before = len((await membership.get(f"/organisations/{oid}/history", limit=500))["items"])
    events_before = await membership.outbox_types()

    chosen = [actions[i % len(actions)] for i in range(CONCURRENT)]
    responses = await _fire(
        membership,
        [(f"/organisations/{oid}/{a}", None if a == "approve" else {"reason": "concurrent"}) for a in chosen],
    )

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: CONCURRENT - 1}, [(r.status_code, r.text) for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    for r in responses:
        if r.status_code == 409:
            body = r.json()
            assert body["error"] == "conflict" and body["message"], body
            # The loser is told the state it met: the winner's, not the one all of them read at first.
            assert start not in body["message"].split("that is ")[1].split(";")[0], body
    final = await membership.get(f"/organisations/{oid}")
    assert final["status"] == winner["status"]
    assert final["status"] != start
    # Exactly one step in the history and exactly one event for it.
    history = (await membership.get(f"/organisations/{oid}/history", limit=500))["items"]
    assert len(history) == history_before + 1
    events = await membership.outbox_types()
    assert len(events) == len(events_before) + 1, events[len(events_before) :]


async def test_twenty_renewals_at_once_each_extends_the_membership_once(membership: Any) -> None:
    """Twenty payments recorded at once: twenty consecutive periods, none paying for the same one."""
    org = await membership.create(name="Rinnovi contemporanei")
    oid = org["id"]
    await membership.post(f"/organisations/{oid}/approve", json={"joined_on": "2025-01-15"})
    due = date.fromisoformat((await membership.get(f"/organisations/{oid}"))["renewal_due"])
    events_before = len(await membership.outbox_types())

    responses = await _fire(membership, [(f"/organisations/{oid}/renewals", {"paid_on": "2025-06-01"})] * CONCURRENT)

    assert [r.status_code for r in responses] == [201] * CONCURRENT, [r.text for r in responses if r.status_code != 201]
    periods = sorted((r.json()["period_start"], r.json()["period_end"]) for r in responses)
    assert periods[0][0] == due.isoformat()
    # Each period starts where the previous ended: no two renewals read the same due date.
    assert all(periods[i][1] == periods[i + 1][0] for i in range(CONCURRENT - 1)), periods
    final = await membership.get(f"/organisations/{oid}")
    assert final["renewal_due"] == periods[-1][1]
    assert len(await membership.outbox_types()) == events_before + CONCURRENT
