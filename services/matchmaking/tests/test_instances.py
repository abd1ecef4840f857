"""Several instances on one database: every instance's index follows the database, whichever instance
wrote; texts are encoded in the background, once, by whichever worker claims them."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from distretto_dev.testing import DatabaseTarget, service_client, settings_for, wait_for
from distretto_shared.db import Database
from matchmaking.app import create_app
from matchmaking.config import Settings
from matchmaking.opportunities import service as opportunity_service
from matchmaking.search.indexing import TEXTS_ENCODED
from matchmaking.search.store import EncodeQueue, IndexItem, TextVector

REQUEST = {
    "opportunity_type": "technology_request",
    "title": "Wanted: automated GMP process for CAR-T cell manufacturing",
    "summary": "A hospital cell factory looks for a closed bioreactor process to manufacture CAR-T cells.",
    "keywords": ["CAR-T", "GMP manufacturing"],
    "technology_fields": ["cell therapy"],
    "sectors": ["biotech"],
}
OTHER = {
    **REQUEST,
    "title": "Wanted: GMP manufacturing process for T cell therapy",
    "summary": "A cell factory looks for a closed process to manufacture engineered T cells.",
    "keywords": ["T cells"],
}


async def post(client: httpx.AsyncClient, payload: Any, **overrides: Any) -> dict[str, Any]:
    r = await client.post("/opportunities", json=payload(**overrides))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/index")).json()  # type: ignore[no-any-return]


async def ranking(client: httpx.AsyncClient, oid: str) -> list[tuple[str, float, float]]:
    page = (await client.get(f"/opportunities/{oid}/counterparts", params={"target": "opportunities"})).json()
    return [(i["counterpart_id"], i["score"], i["score_parts"]["dense"]) for i in page["items"]]


async def settled(*clients: httpx.AsyncClient) -> None:
    """Wait until every instance has applied the whole change log and holds every item's vector."""

    async def done() -> bool:
        seen = [await stats(c) for c in clients]
        return all(s["items_pending"] == 0 and s["changes_behind"] == 0 for s in seen)

    await wait_for(done, what="both instances in step")


async def same_ranking(a: httpx.AsyncClient, b: httpx.AsyncClient, oid: str) -> list[tuple[str, float, float]]:
    await settled(a, b)
    first, second = await ranking(a, oid), await ranking(b, oid)
    assert [x[0] for x in first] == [x[0] for x in second]
    assert all(abs(x[1] - y[1]) < 1e-6 for x, y in zip(first, second, strict=True))
    return first


async def test_two_instances_answer_the_same_ranking_after_writes_to_either(settings: Settings, payload: Any) -> None:
    encoded_before = TEXTS_ENCODED._value.get()
    async with service_client(create_app(settings)) as a, service_client(create_app(settings)) as b:
        offer = await post(a, payload)
        r1 = await post(b, payload, **REQUEST, owner_organisation_id=str(uuid.uuid4()))
        r2 = await post(a, payload, **OTHER, owner_organisation_id=str(uuid.uuid4()))
        first = await same_ranking(a, b, offer["id"])
        assert [x[0] for x in first] == [r1["id"], r2["id"]] and all(x[2] > 0.5 for x in first)

        # A change written to one instance re-ranks in both: r1 now speaks of olive oil.
        changed = await b.patch(
            f"/opportunities/{r1['id']}",
            json={"title": "Wanted: olive leaf polyphenol extracts", "summary": "For food supplements."},
        )
        assert changed.status_code == 200, changed.text
        second = await same_ranking(a, b, offer["id"])
        assert [x[0] for x in second] == [r2["id"], r1["id"]]

        # A withdrawal through one leaves both rankings.
        assert (await a.post(f"/opportunities/{r2['id']}/withdraw")).status_code == 200
        third = await same_ranking(a, b, offer["id"])
        assert [x[0] for x in third] == [r1["id"]]

        # Feedback given through one instance moves the other's ranking too.
        back = await post(b, payload, **OTHER, owner_organisation_id=str(uuid.uuid4()))
        before = await same_ranking(a, b, offer["id"])
        assert [x[0] for x in before] == [back["id"], r1["id"]]
        match = await a.post(
            "/matches",
            json={"opportunity_id": offer["id"], "counterpart_type": "opportunity", "counterpart_id": back["id"]},
        )
        assert match.status_code == 201, match.text
        voted = await a.post(f"/matches/{match.json()['id']}/feedback", json={"side": "opportunity", "useful": False})
        assert voted.status_code == 200, voted.text
        after = await same_ranking(a, b, offer["id"])
        assert [x[0] for x in after] == [r1["id"], back["id"]]

    # Every distinct text was encoded exactly once, by one of the two workers; nothing is left queued.
    db = Database(settings.resolved_database_url(), schema=settings.database_schema)
    try:
        async with db.read() as session:
            vectors = (await session.execute(select(func.count()).select_from(TextVector))).scalar()
            texts = (await session.execute(select(func.count(func.distinct(IndexItem.text_hash))))).scalar()
            queued = (await session.execute(select(func.count()).select_from(EncodeQueue))).scalar()
    finally:
        await db.dispose()
    # offer, r1 (twice: before and after its change), r2, back (the same text as r2: one vector)
    assert vectors == 4 and texts == 3 and queued == 0
    assert TEXTS_ENCODED._value.get() - encoded_before == 4


def backlog_of(metrics: str) -> float:
    found = re.search(r"^distretto_matchmaking_encode_backlog (\S+)$", metrics, re.M)
    assert found, "the backlog metric is exported"
    return float(found.group(1))


async def test_a_new_text_is_found_by_bm25_at_once_and_the_queue_survives_a_restart(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, payload: Any
) -> None:
    serving = settings_for(Settings, database, kafka_bootstrap, index_encoder=False, index_encoder_process=False)
    encoded_before = TEXTS_ENCODED._value.get()
    async with service_client(create_app(serving)) as a:
        offer = await post(a, payload)
        request = await post(a, payload, **REQUEST, owner_organisation_id=str(uuid.uuid4()))
        # No worker runs here and no request encoded anything: BM25 alone finds the request.
        hits = await ranking(a, offer["id"])
        assert [h[0] for h in hits] == [request["id"]] and hits[0][1] > 0 and hits[0][2] == 0
        assert (await stats(a))["items_pending"] == 2
        assert backlog_of((await a.get("/metrics")).text) == 2
        assert TEXTS_ENCODED._value.get() == encoded_before

    # The queue is in the database: an instance with a worker, started later, encodes what was left;
    # a serving-only instance running beside it follows and gets the vectors too.
    async with (
        service_client(create_app(serving)) as a,
        service_client(create_app(serving.model_copy(update={"index_encoder": True}))) as worker,
    ):
        await settled(a, worker)
        hits = await ranking(a, offer["id"])
        assert [h[0] for h in hits] == [request["id"]] and hits[0][2] > 0.5
        assert backlog_of((await a.get("/metrics")).text) == 0
        assert TEXTS_ENCODED._value.get() - encoded_before == 2


async def test_the_writer_indexes_its_own_create_and_change_before_it_answers(
    database: DatabaseTarget, kafka_bootstrap: str, payload: Any
) -> None:
    """The writing instance indexes what it wrote itself, after its unit of work and before its answer:
    with no follower round due (polling every hour, no worker to wake it), the next read sees it."""
    serving = settings_for(
        Settings, database, kafka_bootstrap, index_encoder=False, index_encoder_process=False, index_poll_interval=3600
    )
    async with service_client(create_app(serving)) as a:
        offer = await post(a, payload)
        request = await post(a, payload, **REQUEST, owner_organisation_id=str(uuid.uuid4()))
        assert [h[0] for h in await ranking(a, offer["id"])] == [request["id"]]
        params = {"target": "opportunities", "sector": "nutraceutics"}
        assert (await a.get(f"/opportunities/{offer['id']}/counterparts", params=params)).json()["items"] == []

        changed = await a.patch(f"/opportunities/{request['id']}", json={"sectors": ["nutraceutics"]})
        assert changed.status_code == 200, changed.text
        page = (await a.get(f"/opportunities/{offer['id']}/counterparts", params=params)).json()
        assert [i["counterpart_id"] for i in page["items"]] == [request["id"]]


async def test_a_write_that_fails_after_indexing_leaves_nothing_behind_and_the_next_one_is_indexed(
    database: DatabaseTarget, kafka_bootstrap: str, payload: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish whose unit of work fails after it recorded its index items and change-log entries
    (on the Core unit of work, before the commit): no opportunity, no item, no change-log entry; the
    next publish is indexed before it answers."""
    real = opportunity_service.refresh_opportunity
    fail: list[bool] = []

    async def refresh_then_fail(*args: Any, **kwargs: Any) -> Any:
        done = await real(*args, **kwargs)
        if fail:
            fail.clear()
            raise RuntimeError("the database went away before the commit")
        return done

    monkeypatch.setattr(opportunity_service, "refresh_opportunity", refresh_then_fail)
    serving = settings_for(
        Settings, database, kafka_bootstrap, index_encoder=False, index_encoder_process=False, index_poll_interval=3600
    )
    async with service_client(create_app(serving)) as a:
        offer = await post(a, payload)
        before = await stats(a)
        fail.append(True)
        failed = await a.post("/opportunities", json=payload(**REQUEST, owner_organisation_id=str(uuid.uuid4())))
        assert failed.status_code == 500 and failed.json()["error"] == "internal_error", failed.text
        assert fail == []  # the failure came after the index items were recorded
        assert await stats(a) == before
        listed = (await a.get("/opportunities")).json()
        assert [o["id"] for o in listed["items"]] == [offer["id"]]
        assert await ranking(a, offer["id"]) == []

        request = await post(a, payload, **REQUEST, owner_organisation_id=str(uuid.uuid4()))
        assert [h[0] for h in await ranking(a, offer["id"])] == [request["id"]]
        after = await stats(a)
        assert after["opportunities"] == before["opportunities"] + 1
        assert after["changes_behind"] == before["changes_behind"] + 1  # the failed write's entry is not in the log
