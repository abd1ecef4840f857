"""Benchmark: a campaign through the delivery engine on SQLite and on PostgreSQL, beside raw aiosmtplib.

    uv run python bench/newsletter/run.py                     # 10,000 recipients, 32 connections, 3 runs
    uv run python bench/newsletter/run.py --sizes 10000,100000
    uv run python bench/newsletter/run.py --postgres-url postgresql+asyncpg://user:pw@host/db

In each round, taking turns against a fresh counting SMTP sink (aiosmtpd, its own process): the
raw baseline (the same campaign's mails, rendered beforehand by the engine's composer, sent with
aiosmtplib over the same number of connections: no database, no rendering, no ledger; the sink
reads the same bytes per mail from both), then the engine on a SQLite file, then on PostgreSQL (a schema
of its own, dropped afterwards; skipped without a URL). Printed per engine, as min/median/max over
the rounds: emails/s from the start command to the last mail, and once flowing (from the 10th to
the 90th percentile of the mails, as the sink saw them); CPU per mail of this process (the sender;
SQLite runs inside it) and of the PostgreSQL server processes serving the engine's connections
(read from /proc); the sink's CPU per mail; start command to first mail; duplicates and misses.
The sink is timed with the system-wide monotonic clock, so its timestamps compare with ours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

DEFAULT_POSTGRES = os.environ.get(
    "DISTRETTO_TEST_POSTGRES_URL",
    "postgresql+asyncpg://distretto:distretto@127.0.0.1:5432/distretto_test?ssl=disable",
)
TICK = os.sysconf("SC_CLK_TCK")


def sink_process(port: int, marks: Any, cpu: Any, target: int, ready: Any, stop: Any) -> None:
    """An aiosmtpd server that counts messages; ``marks``: count, first, 10 %, 90 %, last (monotonic)."""
    import uvloop
    from aiosmtpd.smtp import SMTP

    low, high = max(1, target // 10), max(1, target * 9 // 10)

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            now = time.monotonic()
            marks[0] += len(envelope.rcpt_tos)
            n = marks[0]
            if marks[1] == 0:
                marks[1] = now
            if n >= low and marks[2] == 0:
                marks[2] = now
            if n >= high and marks[3] == 0:
                marks[3] = now
            marks[4] = now
            return "250 2.0.0 Ok"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Counting(), hostname="sink"), "127.0.0.1", port)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        server.close()

    uvloop.run(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu.value = usage.ru_utime + usage.ru_stime


class Sink:
    """The sink's process for one run (always stopped, also on Ctrl-C)."""

    def __init__(self, target: int) -> None:
        from distretto_dev.testing import free_port

        self.port = free_port()
        self.target = target
        self.marks = mp.Array("d", 5, lock=False)
        self.cpu = mp.Value("d", 0.0, lock=False)
        self._ready, self._stop = mp.Event(), mp.Event()
        self.proc = mp.Process(
            target=sink_process,
            args=(self.port, self.marks, self.cpu, target, self._ready, self._stop),
            daemon=True,
        )

    def __enter__(self) -> Sink:
        self.proc.start()
        if not self._ready.wait(60):
            raise RuntimeError("the SMTP sink did not start")
        return self

    def cpu_now(self) -> float:
        return proc_cpu(self.proc.pid) if self.proc.pid else 0.0

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)

    @property
    def count(self) -> int:
        return int(self.marks[0])


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 1)[0]


BODY = "Notizie del distretto. " * 60
SUBJECT = "Notizie dal Distretto, {{ subscriber.name }}"
BODY_HTML = "<h1>Ciao {{ subscriber.name }}</h1><p>" + BODY + "</p>"
BODY_TEXT = "Ciao {{ subscriber.name }}\n\n" + BODY
"""The campaign both sides send: the engine renders it per recipient, the raw baseline sends it prerendered."""


def sample_messages(count: int) -> list[bytes]:
    """The engine's own mails of the bench's campaign, rendered beforehand (by the engine's composer:
    the same headers, unsubscribe footer and encoding, so the sink reads the same bytes from both)."""
    from newsletter.campaigns.models import Campaign
    from newsletter.config import Settings
    from newsletter.delivery.compose import CampaignMail
    from newsletter.delivery.ledger import Claimed
    from newsletter.delivery.mime import format_address
    from newsletter.templates.models import Template

    settings = Settings(link_base_url="https://distretto.example/newsletter", secret_key=secrets.token_urlsafe(32))
    template = Template(name="bench", subject=SUBJECT, body_html=BODY_HTML, body_text=BODY_TEXT)
    campaign = Campaign(name="bench", subject=SUBJECT, template_id=template.id, lists=["all"])
    mail = CampaignMail(
        settings, campaign, template, from_header=format_address(settings.from_name, settings.from_address)
    )
    return [
        mail.compose(
            Claimed(
                id=i,
                token="",
                kind="campaign",
                campaign_id=campaign.id,
                subscriber_id=secrets.token_hex(16),
                email=f"r{i}@example.org",
                payload=None,
                attempts=0,
                name=f"Recipient {i}",
                attributes={"city": "Siena"},
            )
        )[1]
        for i in range(count)
    ]


async def wait_count(sink: Sink, n: int, hang: float) -> None:
    """Wait for the sink to have ``n`` mails (``hang``: seconds without progress that mean a hang)."""
    last, since = -1, time.monotonic()
    while sink.count < n:
        if sink.count != last:
            last, since = sink.count, time.monotonic()
        elif time.monotonic() - since > hang:
            raise RuntimeError(f"no progress for {hang:.0f}s at {sink.count}/{n} mails")
        await asyncio.sleep(0.05)


def figures(sink: Sink, n: int, t0: float, cpu: float, db_cpu: float | None, sink_cpu: float) -> dict[str, Any]:
    m = sink.marks
    low, high = max(1, n // 10), max(1, n * 9 // 10)
    return {
        "from_start": n / (m[4] - t0),
        "flowing": (high - low) / (m[3] - m[2]) if m[3] > m[2] else float("nan"),
        "cpu_ms": cpu / n * 1000,
        "db_ms": None if db_cpu is None else db_cpu / n * 1000,
        "sink_ms": sink_cpu / n * 1000,
        "first_s": m[1] - t0,
        "received": sink.count,
        "load": loadavg(),
    }


async def baseline(n: int, connections: int, messages: list[bytes]) -> dict[str, Any]:
    """Raw aiosmtplib: MAIL/RCPT/DATA of prerendered messages over ``connections`` connections."""
    import aiosmtplib

    with Sink(n) as sink:
        queue = iter(range(n))
        clients = []
        for _ in range(connections):
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port)
            await client.connect()
            clients.append(client)

        async def worker(client: aiosmtplib.SMTP) -> None:
            for i in queue:
                await client.mail("newsletter@distretto.example")
                await client.rcpt(f"r{i}@example.org")
                await client.data(messages[i % len(messages)])

        sink0, cpu0, t0 = sink.cpu_now(), cpu_self(), time.monotonic()
        await asyncio.gather(*(worker(c) for c in clients))
        await wait_count(sink, n, 60)
        res = figures(sink, n, t0, cpu_self() - cpu0, None, sink.cpu_now() - sink0)
        for client in clients:
            with contextlib.suppress(Exception):
                await client.quit()
    res["duplicates"], res["misses"] = max(0, res["received"] - n), max(0, n - res["received"])
    return res


async def seed(db: Any, n: int, list_id: str) -> None:
    """``n`` subscribers confirmed on the list, in two set-based statements (no row crosses the wire).

    The triggers that keep ``audience_member`` are dropped for the load and put back afterwards,
    which fills that table in one statement too (they would otherwise run once per row).
    """
    import sqlalchemy as sa

    from newsletter.audience import install_member_rows, remove_member_rows
    from newsletter.subscribers.models import Subscriber

    when = Subscriber.__table__.c.created_at.type  # type: ignore[attr-defined]
    stamp: dict[str, Any] = {"now": datetime.now(UTC)}
    if db.sqlite:
        people = (
            "INSERT INTO subscriber (id, email, email_sha256, name, language, attributes, suppressed, soft_bounces,"
            " created_at, updated_at)"
            " WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < :n)"
            " SELECT lower(hex(randomblob(16))), 'r' || i || '@example.org', printf('%064d', i), 'Recipient ' || i,"
            " 'it', '{\"city\": \"Siena\"}', 0, 0, :now, :now FROM seq"
        )
    else:
        people = (
            "INSERT INTO subscriber (id, email, email_sha256, name, language, attributes, suppressed, soft_bounces,"
            " created_at, updated_at)"
            " SELECT md5(i::text || :salt), 'r' || i || '@example.org', lpad(i::text, 64, '0'), 'Recipient ' || i,"
            " 'it', CAST('{\"city\": \"Siena\"}' AS json), false, 0, :now, :now FROM generate_series(0, :n - 1) AS i"
        )
        stamp["salt"] = secrets.token_hex(8)
    on_list = (
        "INSERT INTO subscription (subscriber_id, list_id, status, created_at, updated_at)"
        " SELECT id, :list, 'confirmed', :now, :now FROM subscriber"
    )
    async with db.engine.begin() as conn:
        await conn.run_sync(remove_member_rows)
        await conn.execute(sa.text(people).bindparams(sa.bindparam("now", type_=when)), {"n": n, **stamp})
        await conn.execute(sa.text(on_list).bindparams(sa.bindparam("now", type_=when)), {"list": list_id, **stamp})
        await conn.run_sync(install_member_rows)
    # A register of this size has its planner statistics (autovacuum gathers them within a minute
    # of such a load): without them PostgreSQL plans the audience's chunk as a sort of everyone.
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("ANALYZE"))


async def engine_run(n: int, args: argparse.Namespace, url: str, workdir: Path, run: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from distretto_shared.db import Database
    from distretto_shared.migrations import upgrade_async
    from newsletter.app import MIGRATIONS
    from newsletter.campaigns import service as campaigns
    from newsletter.campaigns.models import CampaignCreate
    from newsletter.config import Settings
    from newsletter.delivery.engine import DeliveryEngine
    from newsletter.domain import CampaignAction
    from newsletter.lists import service as lists
    from newsletter.lists.models import MailingList, MailingListCreate
    from newsletter.templates import service as templates
    from newsletter.templates.models import TemplateCreate

    sqlite = url.startswith("sqlite")
    schema = None if sqlite else f"nlbench_{os.getpid()}_{run}_{secrets.token_hex(3)}"
    await upgrade_async(MIGRATIONS, url, schema)
    db = Database(url, schema=schema)
    backends: set[int] = set()
    if not sqlite:
        # every connection of the engine's pool names its server process, whose CPU /proc gives
        @sa.event.listens_for(db.engine.sync_engine, "connect")
        def _backend(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            backends.add(int(cursor.fetchone()[0]))
            cursor.close()

    settings = Settings(
        database_url=url,
        database_schema=schema,
        smtp_servers="127.0.0.1:1",
        smtp_connections_per_server=args.connections,
        **({"claim_batch": args.claim_batch} if args.claim_batch else {}),
        **({"freeze_chunk": args.freeze_chunk} if args.freeze_chunk else {}),
        link_base_url="https://distretto.example/newsletter",
        secret_key=secrets.token_urlsafe(32),
    )
    holder: dict[type, Any] = {}
    ctx: Any = SimpleNamespace(db=db, settings=settings, source="/bench", find=holder.get)
    try:
        await lists.create_list(ctx, MailingListCreate(slug="all", name="All"))
        async with db.read() as session:
            list_id = (await session.execute(sa.select(MailingList.id).where(MailingList.slug == "all"))).scalar_one()
        began = time.monotonic()
        await seed(db, n, list_id)
        print(f"  {n:,} subscribers seeded in {time.monotonic() - began:.1f}s", file=sys.stderr, flush=True)
        tpl = await templates.create_template(
            ctx,
            TemplateCreate(
                name="bench",
                subject=SUBJECT,
                body_html=BODY_HTML,
                body_text=BODY_TEXT,
            ),
        )
        campaign = await campaigns.create_campaign(
            ctx, CampaignCreate(name="bench", subject=tpl.subject, template_id=tpl.id, lists=["all"])
        )
        campaign_id = campaign.id.replace("-", "")  # the stored form of the public id
        with Sink(n) as sink:
            settings.smtp_servers = f"127.0.0.1:{sink.port}"
            engine = DeliveryEngine(db, settings, source="/bench")
            holder[DeliveryEngine] = engine
            await engine.start()  # idle, as in a running service
            await asyncio.sleep(0.3)  # its connections' pool is open before the clock starts
            db0 = {pid: proc_cpu(pid) for pid in backends}
            sink0, cpu0, t0 = sink.cpu_now(), cpu_self(), time.monotonic()
            started = await campaigns.campaign_action(ctx, campaign_id, CampaignAction.START)
            assert started.recipients == n, started.recipients
            command_s = time.monotonic() - t0
            if args.first_mail_only:
                await wait_count(sink, 1, 120)
                first_s = sink.marks[1] - t0
                await engine.stop()
                return {"first_s": first_s, "command_s": command_s, "load": loadavg()}
            await wait_count(sink, n, 120)
            while engine.sent_total < n:  # the last outcomes' commit
                await asyncio.sleep(0.01)
            cpu = cpu_self() - cpu0
            db_cpu = None if sqlite else sum(proc_cpu(pid) - db0.get(pid, 0.0) for pid in backends)
            res = figures(sink, n, t0, cpu, db_cpu, sink.cpu_now() - sink0)
            res["command_s"] = command_s
            await engine.stop()
        async with db.read() as session:
            sent = (
                await session.execute(
                    sa.text("SELECT count(*) FROM delivery WHERE status = 'sent' AND campaign_id = :c"),
                    {"c": campaign_id},
                )
            ).scalar_one()
        res["duplicates"] = max(0, res["received"] - sent)
        res["misses"] = n - sent
    finally:
        if schema:
            async with db.transaction() as session:
                await session.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await db.dispose()
    return res


def spread(values: list[float], fmt: str) -> str:
    if not values or any(v is None for v in values):
        return "—"
    return "/".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def report(n: int, args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> None:
    raw = results["raw aiosmtplib"]
    print(
        f"\n{n:,} recipients, {args.connections} SMTP connections, {args.runs} rounds, {os.cpu_count()} CPUs "
        f"(min/median/max; ratios per round against that round's raw run); load average 1 min per run: "
        + ", ".join(f"{name} {' '.join(r['load'] for r in rs)}" for name, rs in results.items())
    )
    head = (
        f"{'':16} {'emails/s from start':>21} {'emails/s flowing':>20} {'× raw flowing':>15} {'CPU ms/mail':>16}"
        f" {'DB CPU ms/mail':>16} {'(eng+DB)/raw CPU':>17} {'start→1st mail s':>19} {'sink CPU ms/mail':>17}"
        f" {'dup/miss':>9}"
    )
    print(head)
    for name, rs in results.items():
        ratio = [r["flowing"] / b["flowing"] for r, b in zip(rs, raw, strict=True)]
        cpu_ratio = [(r["cpu_ms"] + (r["db_ms"] or 0.0)) / b["cpu_ms"] for r, b in zip(rs, raw, strict=True)]
        print(
            f"{name:16} {spread([r['from_start'] for r in rs], '.0f'):>21} {spread([r['flowing'] for r in rs], '.0f'):>20}"
            f" {spread(ratio, '.2f'):>15} {spread([r['cpu_ms'] for r in rs], '.2f'):>16}"
            f" {spread([r['db_ms'] for r in rs], '.2f'):>16} {spread(cpu_ratio, '.2f'):>17}"
            f" {spread([r['first_s'] for r in rs], '.3f'):>19} {spread([r['sink_ms'] for r in rs], '.2f'):>17}"
            f" {sum(r['duplicates'] for r in rs):>4}/{sum(r['misses'] for r in rs):<4}"
        )
    sys.stdout.flush()


def progress(name: str, r: dict[str, Any]) -> None:
    """One run's figures as soon as it ends (on stderr: the table comes at the end of each size)."""
    shown = ", ".join(
        f"{key} {r[key]:.3f}" if isinstance(r[key], float) else f"{key} {r[key]}"
        for key in ("first_s", "command_s", "flowing", "from_start", "cpu_ms", "db_ms", "duplicates", "misses", "load")
        if r.get(key) is not None
    )
    print(f"  {name}: {shown}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000", help="recipients, comma-separated (e.g. 10000,100000)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--claim-batch", type=int, default=0, help="rows per claim (default: the service's, 500)")
    parser.add_argument(
        "--freeze-chunk", type=int, default=0, help="recipients frozen at a time (default: the service's, 2000)"
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="'' to leave PostgreSQL out")
    parser.add_argument(
        "--first-mail-only",
        action="store_true",
        help="only the start command and the time to the first mail (no baseline, the campaign not sent out)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "newsletter" / "src"))
    import uvloop

    from distretto_shared.logging import configure_logging

    configure_logging("bench", "WARNING", False)
    messages = sample_messages(1000)
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        results: dict[str, list[dict[str, Any]]] = {"raw aiosmtplib": [], "engine SQLite": []}
        if args.postgres_url:
            results["engine PostgreSQL"] = []
        if args.first_mail_only:
            del results["raw aiosmtplib"]
        for run in range(args.runs):
            if not args.first_mail_only:
                results["raw aiosmtplib"].append(uvloop.run(baseline(n, args.connections, messages)))
                progress("raw aiosmtplib", results["raw aiosmtplib"][-1])
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
                results["engine SQLite"].append(uvloop.run(engine_run(n, args, url, Path(tmp), run)))
                progress("engine SQLite", results["engine SQLite"][-1])
                if args.postgres_url:
                    results["engine PostgreSQL"].append(
                        uvloop.run(engine_run(n, args, args.postgres_url, Path(tmp), run))
                    )
                    progress("engine PostgreSQL", results["engine PostgreSQL"][-1])
            print(f"round {run + 1}/{args.runs} at {n:,} done", file=sys.stderr, flush=True)
        if args.first_mail_only:
            print(f"\n{n:,} recipients, {args.connections} SMTP connections, {args.runs} rounds (min/median/max)")
        else:
            report(n, args, results)
        for name, rs in results.items():
            if name != "raw aiosmtplib":
                print(
                    f"{name}: the start command itself took {spread([r['command_s'] for r in rs], '.3f')} s, "
                    f"start to first mail {spread([r['first_s'] for r in rs], '.3f')} s; "
                    f"load average {' '.join(r['load'] for r in rs)}"
                )


if __name__ == "__main__":
    main()
