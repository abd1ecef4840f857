"""Twenty staff members submitting one deliverable at the same moment: one submission, one event.

The deliverable (and its project before it) is loaded with its row locked
(``distretto_shared.db.load``), so the second request sees the first one's "submitted" and is refused
by the state machine (docs/architecture.md, "Concurrent writes").
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

CONCURRENT = 20


async def test_twenty_submissions_of_one_deliverable_one_wins_one_event(svc: Any) -> None:
    project = await svc.project()
    base = f"/projects/{project['id']}"
    d = await svc.post(f"{base}/deliverables", {"number": "D1.1", "title": "Data management plan", "due_month": 6})
    events_before = await svc.outbox_types()

    responses = await asyncio.gather(
        *(
            svc.http.post(f"{base}/deliverables/{d['id']}/submit", json={"submitted_on": f"2025-05-{day:02d}"})
            for day in range(1, CONCURRENT + 1)
        )
    )

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: CONCURRENT - 1}, [(r.status_code, r.text) for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    for r in responses:
        if r.status_code == 409:
            assert r.json()["error"] == "conflict" and r.json()["message"]
    final = await svc.get(f"{base}/deliverables/{d['id']}")
    assert (final["status"], final["submitted_on"]) == ("submitted", winner["submitted_on"])
    new_events = (await svc.outbox_types())[len(events_before) :]
    assert new_events == ["distretto.projects.deliverable.submitted.v1"], new_events
