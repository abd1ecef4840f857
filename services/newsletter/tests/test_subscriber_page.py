"""A page of subscribers costs the same few queries however many people are on it (no query per row)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from distretto_dev.testing import DatabaseTarget, service_client
from newsletter.app import create_app

from .conftest import SmtpSink, add_subscriber, make_settings, setup_list


@contextmanager
def statements_on(*tables: str) -> Iterator[list[str]]:
    """The SQL statements that read one of ``tables`` while the block runs (any engine of this process)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        lowered = statement.lower()
        reads = any(f"from {t}" in lowered or f"join {t}" in lowered for t in tables)
        if lowered.lstrip().startswith("select") and reads:
            seen.append(statement)

    sa.event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(Engine, "before_cursor_execute", record)


async def test_a_page_of_subscribers_reads_interests_and_lists_once(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    settings = make_settings(database, kafka_bootstrap, sink)
    async with service_client(create_app(settings)) as client:
        await setup_list(client, "news")
        await setup_list(client, "events")
        for n in range(30):
            lists = ["news", "events"] if n % 3 == 0 else ["news"]
            await add_subscriber(client, f"reader{n:02d}@example.org", lists, interests=[f"topic{n % 4}", "oncology"])

        async def page(limit: int) -> tuple[list[dict[str, Any]], int]:
            with statements_on("subscriber_interest", "subscription") as seen:
                r = await client.get("/subscribers", params={"limit": limit})
            assert r.status_code == 200, r.text
            return r.json()["items"], len(seen)

        few, queries_for_few = await page(3)
        many, queries_for_many = await page(30)
        # what the page shows is each person's own lists and interests …
        assert [s["email"] for s in many] == [f"reader{n:02d}@example.org" for n in range(30)]
        for n, sub in enumerate(many):
            assert sub["interests"] == sorted({f"topic{n % 4}", "oncology"}), sub
            slugs = [s["list_slug"] for s in sub["subscriptions"]]
            assert slugs == (["events", "news"] if n % 3 == 0 else ["news"]), sub
            assert all(s["status"] == "confirmed" for s in sub["subscriptions"])
        assert few == many[:3]
        # … read with one query for the interests and one for the lists, for 3 rows as for 30
        assert queries_for_many == queries_for_few == 2, (queries_for_few, queries_for_many)
