"""Benchmark: a campaign to N recipients through the delivery engine into a local SMTP sink.

    uv run python bench/newsletter/run.py --recipients 100000 --connections 8

Side by side, in the same run and against the same sink: a baseline that sends the same kind of
prerendered messages with raw aiosmtplib over the same number of connections (no database, no
rendering, no ledger). Prints emails/s, CPU seconds (this process; the sink's separately) and
peak RSS. The sink is an aiosmtpd server in its own process that counts messages.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def run_loop(main: Any, loop: str) -> Any:
    """``asyncio.run`` on the chosen event loop (``serve`` runs on uvloop through uvicorn's ``auto``)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def sink_process(port: int, count: Any, cpu: Any, ready: Any, stop: Any, loop: str) -> None:
    """An aiosmtpd server that accepts and counts every message."""
    from aiosmtpd.smtp import SMTP

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            count.value += len(envelope.rcpt_tos)
            return "250 2.0.0 Ok"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Counting(), hostname="sink"), "127.0.0.1", port)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        server.close()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu.value = usage.ru_utime + usage.ru_stime

    run_loop(main(), loop)


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def baseline(port: int, n: int, connections: int, messages: list[bytes]) -> None:
    """Raw aiosmtplib: MAIL/RCPT/DATA of prerendered messages over ``connections`` connections."""
    import aiosmtplib

    queue = iter(range(n))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for i in queue:
            await client.mail("news@distretto.example")
            await client.rcpt(f"r{i}@example.org")
            await client.data(messages[i % len(messages)])
        await client.quit()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def engine_run(args: argparse.Namespace, port: int, workdir: Path) -> dict[str, Any]:
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
    from newsletter.lists.models import MailingListCreate
    from newsletter.subscribers.models import Subscriber, Subscription
    from newsletter.tables import new_id
    from newsletter.templates import service as templates
    from newsletter.templates.models import TemplateCreate

    url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    schema = f"bench_{os.getpid()}" if not url.startswith("sqlite") else None
    await upgrade_async(MIGRATIONS, url, schema)
    db = Database(url, schema=schema)
    settings = Settings(
        database_url=url,
        database_schema=schema,
        smtp_servers=f"127.0.0.1:{port}",
        smtp_connections_per_server=args.connections,
        claim_batch=args.claim_batch,
        delivery_poll_interval=0.05,
        link_base_url="https://distretto.example/newsletter",
        secret_key=secrets.token_urlsafe(32),
    )
    ctx: Any = SimpleNamespace(db=db, settings=settings, source="/bench", find=lambda _cls: None)
    lst = await lists.create_list(ctx, MailingListCreate(slug="all", name="All"))
    t = time.perf_counter()
    S, SS = Subscriber.__table__, Subscription.__table__  # type: ignore[attr-defined]
    chunk = 5000
    for start in range(0, args.recipients, chunk):
        subs = []
        links = []
        for i in range(start, min(args.recipients, start + chunk)):
            sid = new_id()
            subs.append(
                {
                    "id": sid,
                    "email": f"r{i}@example.org",
                    "email_sha256": f"{i:064d}",
                    "name": f"Recipient {i}",
                    "language": "it",
                    "attributes": {"city": "Siena"},
                    "suppressed": False,
                    "soft_bounces": 0,
                    "created_at": sa.func.now(),
                    "updated_at": sa.func.now(),
                }
            )
            links.append({"subscriber_id": sid, "list_id": lst.id, "status": "confirmed"})
        async with db.transaction() as session:
            await session.execute(S.insert(), [{**s, "created_at": None, "updated_at": None} | _now() for s in subs])
            await session.execute(SS.insert(), [link | _now() for link in links])
    setup_s = time.perf_counter() - t
    tpl = await templates.create_template(
        ctx,
        TemplateCreate(
            name="bench",
            subject="Notizie dal Distretto, {{ subscriber.name }}",
            body_html="<h1>Ciao {{ subscriber.name }}</h1><p>" + "Notizie del distretto. " * 60 + "</p>",
            body_text="Ciao {{ subscriber.name }}\n\n" + "Notizie del distretto. " * 60,
        ),
    )
    campaign = await campaigns.create_campaign(
        ctx, CampaignCreate(name="bench", subject=tpl.subject, template_id=tpl.id, lists=["all"])
    )
    t = time.perf_counter()
    started = await campaigns.campaign_action(ctx, campaign.id, CampaignAction.START)
    freeze_s = time.perf_counter() - t
    assert started.recipients == args.recipients, started.recipients

    engine = DeliveryEngine(db, settings, source="/bench")
    cpu0, t0 = cpu_now(), time.perf_counter()
    await engine.start()
    while engine.sent_total < args.recipients:
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - t0
    cpu = cpu_now() - cpu0
    await engine.stop()
    async with db.read() as session:
        sent = (
            await session.execute(
                sa.text("SELECT count(*) FROM delivery WHERE status = 'sent' AND campaign_id = :c"), {"c": campaign.id}
            )
        ).scalar_one()
    if schema:
        async with db.transaction() as session:
            await session.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    await db.dispose()
    return {"elapsed": elapsed, "cpu": cpu, "sent": sent, "setup_s": setup_s, "freeze_s": freeze_s}


def _now() -> dict[str, Any]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {"created_at": now, "updated_at": now}


def sample_messages(count: int) -> list[bytes]:
    from newsletter.delivery import mime

    body = "Notizie del distretto. " * 60
    return [
        mime.build_message(
            from_header="Distretto <news@distretto.example>",
            to_name=f"Recipient {i}",
            to_addr=f"r{i}@example.org",
            subject=f"Notizie dal Distretto, Recipient {i}",
            text=f"Ciao Recipient {i}\n\n{body}",
            html=f"<h1>Ciao Recipient {i}</h1><p>{body}</p>",
            message_id=mime.message_id_for("bench", str(i), "distretto.example"),
            extra_headers=[("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")],
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--claim-batch", type=int, default=100)
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--loop", choices=["uvloop", "asyncio"], default="uvloop", help="event loop of sender and sink (default uvloop)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "newsletter" / "src"))
    from distretto_dev.testing import free_port
    from distretto_shared.logging import configure_logging

    configure_logging("bench", "WARNING", False)
    results: dict[str, dict[str, Any]] = {}
    for name in (["baseline"] if not args.skip_baseline else []) + ["engine"]:
        port = free_port()
        count, cpu, ready, stop = mp.Value("l", 0), mp.Value("d", 0.0), mp.Event(), mp.Event()
        proc = mp.Process(target=sink_process, args=(port, count, cpu, ready, stop, args.loop), daemon=True)
        proc.start()
        ready.wait(30)
        with tempfile.TemporaryDirectory() as tmp:
            if name == "baseline":
                messages = sample_messages(1000)
                cpu0, t0 = cpu_now(), time.perf_counter()
                run_loop(baseline(port, args.recipients, args.connections, messages), args.loop)
                res: dict[str, Any] = {
                    "elapsed": time.perf_counter() - t0,
                    "cpu": cpu_now() - cpu0,
                    "sent": args.recipients,
                }
            else:
                res = run_loop(engine_run(args, port, Path(tmp)), args.loop)
        stop.set()
        proc.join(10)
        res["sink_received"] = count.value
        res["sink_cpu"] = cpu.value
        res["peak_rss_mb"] = peak_rss_mb()
        results[name] = res

    db = "sqlite" if not args.database_url else args.database_url.split("+")[0].split(":")[0]
    print(
        f"newsletter delivery benchmark: {args.recipients} recipients, {args.connections} SMTP connections, "
        f"database {db}, {args.loop} event loop, {os.cpu_count()} CPUs"
    )
    print(
        f"{'':10} {'emails/s':>10} {'seconds':>9} {'CPU s':>8} {'sink CPU s':>11} {'received':>9} {'peak RSS MB':>12}"
    )
    for name, r in results.items():
        print(
            f"{name:10} {r['sent'] / r['elapsed']:10.0f} {r['elapsed']:9.1f} {r['cpu']:8.1f} "
            f"{r['sink_cpu']:11.1f} {r['sink_received']:9d} {r['peak_rss_mb']:12.0f}"
        )
    if "engine" in results:
        e = results["engine"]
        print(
            f"engine setup: {e['setup_s']:.1f}s to insert subscribers, {e['freeze_s']:.1f}s to freeze the audience "
            f"into the ledger; ledger rows sent: {e['sent']}"
        )


if __name__ == "__main__":
    main()
