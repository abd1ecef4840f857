"""Benchmark: counting a segment over N subscribers on PostgreSQL.

    DISTRETTO_BENCH_POSTGRES_URL=postgresql+asyncpg://… uv run python bench/newsletter/segments.py --subscribers 100000

Builds the newsletter's tables in a throwaway schema and fills them with a register: N subscribers,
each a member contact of one of N/20 organisations (kind, size class, province, status, one to
three sectors, competence keywords), most confirmed on the members list, some projects with
participants. Then counts a segment ("pharma or biotech SMEs, active, outside Lucca, consenting")
three times through the service's compiled query (``newsletter.segments.count_in``), and beside it
the same question written directly in SQL over the same tables, and the join the count needed
before the per-subscriber audience row (subscriber ⋈ member contact ⋈ confirmed subscription);
prints min / median / max of each (after one warm-up run each, so all are measured with a warm
cache), the ratio compiled / direct and the machine's load average. The goal is under 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import newsletter.audience
import newsletter.models
import newsletter.segments as segments
import newsletter.tables

SCHEMA = "bench_segments"

RULE = {
    "all": [
        {"field": "sector", "any_of": ["pharma", "biotech"]},
        {"field": "size_class", "any_of": ["micro", "small", "medium"]},
        {"field": "status", "any_of": ["active"]},
        {"none": [{"field": "province", "any_of": ["LU"]}]},
    ]
}

DIRECT_SQL = """
SELECT count(*)
FROM audience_member m
JOIN audience_organisation o ON o.organisation_id = m.organisation_id
WHERE m.consenting
  AND EXISTS (SELECT 1 FROM audience_tag t
              WHERE t.organisation_id = o.organisation_id AND t.facet = 'sector' AND t.value IN ('pharma', 'biotech'))
  AND o.size_class IN ('micro', 'small', 'medium')
  AND o.status = 'active'
  AND o.province IS DISTINCT FROM 'LU'
"""
"""The same question by hand over the same tables (the per-subscriber audience row the triggers keep)."""

NORMALISED_SQL = """
SELECT count(*)
FROM subscriber s
JOIN member_contact mc ON mc.contact_id = s.contact_id
JOIN audience_organisation o ON o.organisation_id = mc.organisation_id
WHERE NOT s.suppressed
  AND EXISTS (SELECT 1 FROM subscription ss WHERE ss.subscriber_id = s.id AND ss.status = 'confirmed')
  AND EXISTS (SELECT 1 FROM audience_tag t
              WHERE t.organisation_id = o.organisation_id AND t.facet = 'sector' AND t.value IN ('pharma', 'biotech'))
  AND o.size_class IN ('micro', 'small', 'medium')
  AND o.status = 'active'
  AND o.province IS DISTINCT FROM 'LU'
"""
"""Before the audience row: the join over subscriber, member contact and confirmed subscription."""

SECTORS = ["pharma", "biotech", "medical devices", "digital health", "nutraceuticals", "diagnostics", "cosmetics"]
KINDS = ["company"] * 8 + ["university", "research_institute", "hospital", "foundation"]
SIZES = ["micro", "small", "medium", "large", None]
PROVINCES = ["FI", "PI", "SI", "LU", "AR", "GR", "LI", "MS", "PO", "PT"]
STATUSES = ["active"] * 8 + ["suspended", "lapsed", "left", "applied"]
KEYWORDS = ["genomics", "car-t", "bioprinting", "mass spectrometry", "gmp", "ai", "imaging", "vaccines"]


def tables() -> list[sa.Table]:
    names = [
        "mailing_list",
        "subscriber",
        "subscription",
        "subscriber_interest",
        "member_contact",
        *newsletter.audience.TABLES,
        *newsletter.audience.MEMBER_TABLES,
    ]
    return [newsletter.models.Base.metadata.tables[n] for n in names]


async def insert(conn: Any, table: sa.Table, rows: list[dict[str, Any]], batch: int = 5000) -> None:
    for i in range(0, len(rows), batch):
        await conn.execute(sa.insert(table), rows[i : i + batch])


async def load(engine: Any, n: int, seed: int) -> int:
    rng = random.Random(seed)
    T = newsletter.models.Base.metadata.tables
    now = newsletter.tables.utcnow()
    n_orgs = max(1, n // 20)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: newsletter.models.Base.metadata.create_all(c, tables=tables()))
        await insert(
            conn,
            T["mailing_list"],
            [
                {
                    "id": "members",
                    "slug": "members",
                    "name": "Members",
                    "description": "",
                    "visibility": "private",
                    "created_at": now,
                }
            ],
        )
        orgs, tags = [], []
        for i in range(n_orgs):
            oid = f"o{i}"
            orgs.append(
                {
                    "organisation_id": oid,
                    "kind": rng.choice(KINDS),
                    "size_class": rng.choice(SIZES),
                    "province": rng.choice(PROVINCES),
                    "status": rng.choice(STATUSES),
                    "updated_at": now,
                }
            )
            for facet, pool, k in (("sector", SECTORS, rng.randint(1, 3)), ("keyword", KEYWORDS, rng.randint(0, 3))):
                for value in rng.sample(pool, k):
                    tags.append({"facet": facet, "value": value, "organisation_id": oid, "source": "membership"})
        await insert(conn, T["audience_organisation"], orgs)
        await insert(conn, T["audience_tag"], tags)
        subs, contacts, subscriptions = [], [], []
        for i in range(n):
            sid, cid = f"s{i:07d}", f"c{i:07d}"
            email = f"person{i}@org{i % n_orgs}.example"
            subs.append(
                {
                    "id": sid,
                    "email": email,
                    "email_sha256": f"{i:064x}",
                    "name": f"Person {i}",
                    "language": "it",
                    "attributes": {},
                    "suppressed": rng.random() < 0.01,
                    "soft_bounces": 0,
                    "contact_id": cid,
                    "created_at": now,
                    "updated_at": now,
                    "confirmed_at": now,
                }
            )
            contacts.append(
                {
                    "contact_id": cid,
                    "organisation_id": f"o{rng.randrange(n_orgs)}",
                    "email": email,
                    "email_sha256": f"{i:064x}",
                    "first_name": "",
                    "last_name": "",
                    "role": "",
                    "language": "it",
                    "consent_newsletter": True,
                    "details_due": False,
                    "updated_at": now,
                }
            )
            status = "confirmed" if rng.random() < 0.9 else "unsubscribed"
            subscriptions.append(
                {"subscriber_id": sid, "list_id": "members", "status": status, "created_at": now, "updated_at": now}
            )
        await insert(conn, T["subscriber"], subs)
        await insert(conn, T["member_contact"], contacts)
        await insert(conn, T["subscription"], subscriptions)
        parts = [
            {
                "project_id": f"p{i % 50}",
                "participant_id": f"pa{i}",
                "organisation_id": f"o{rng.randrange(n_orgs)}",
                "role": rng.choice(["coordinator", "participant"]),
            }
            for i in range(n_orgs // 2)
        ]
        await insert(conn, T["audience_participation"], parts)
        await insert(
            conn,
            T["audience_project"],
            [{"project_id": f"p{i}", "acronym": f"PRJ{i}", "status": "SIGNED"} for i in range(50)],
        )
    async with engine.begin() as conn:
        # as migration 0007 does on a database that has subscribers: the triggers, then the rows
        await conn.run_sync(newsletter.audience.install_member_rows)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM ANALYZE"))  # what autovacuum does after a load: visibility map, statistics
    return n_orgs


async def timed(fn: Any, runs: int) -> tuple[list[float], int]:
    await fn()  # warm-up
    times, result = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times, result


def line(label: str, times: list[float], result: int) -> str:
    return (
        f"{label:<28} count={result:>7}  min {min(times):7.1f} ms  median {statistics.median(times):7.1f} ms"
        f"  max {max(times):7.1f} ms"
    )


async def main(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("DISTRETTO_BENCH_POSTGRES_URL") or os.environ.get("DISTRETTO_TEST_POSTGRES_URL")
    if not url or not url.startswith("postgresql"):
        print("set DISTRETTO_BENCH_POSTGRES_URL (or --url) to a PostgreSQL database", file=sys.stderr)
        return 2
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": SCHEMA}})
    try:
        t0 = time.perf_counter()
        n_orgs = await load(engine, args.subscribers, args.seed)
        print(f"loaded {args.subscribers} subscribers, {n_orgs} organisations in {time.perf_counter() - t0:.1f} s")
        rule = segments.parse_rule(RULE)

        async def compiled() -> int:
            async with AsyncSession(engine) as session:
                return await segments.count_in(session, rule)

        def by_hand(sql: str) -> Any:
            async def run() -> int:
                async with engine.connect() as conn:
                    return int((await conn.execute(sa.text(sql))).scalar_one())

            return run

        before = os.getloadavg()
        c_times, c_count = await timed(compiled, args.runs)
        d_times, d_count = await timed(by_hand(DIRECT_SQL), args.runs)
        n_times, n_count = await timed(by_hand(NORMALISED_SQL), args.runs)
        after = os.getloadavg()
        print(line("segment (compiled rule)", c_times, c_count))
        print(line("same query, direct SQL", d_times, d_count))
        print(line("normalised join, direct SQL", n_times, n_count))
        print(f"compiled / direct (medians): {statistics.median(c_times) / statistics.median(d_times):.2f}")
        print(
            "load average (1, 5, 15 min): "
            f"before {tuple(round(x, 2) for x in before)}, after {tuple(round(x, 2) for x in after)}"
            f" on {os.cpu_count()} CPUs"
        )
        if not c_count == d_count == n_count:
            print("the queries disagree", file=sys.stderr)
            return 1
        goal = statistics.median(c_times) < args.goal_ms
        print(f"goal: median under {args.goal_ms:.0f} ms — {'met' if goal else 'NOT met'}")
        return 0 if goal else 1
    finally:
        if not args.keep:
            async with engine.begin() as conn:
                await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--goal-ms", type=float, default=200.0)
    parser.add_argument("--url", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the schema (to EXPLAIN by hand)")
    sys.exit(asyncio.run(main(parser.parse_args())))
