"""Assembly of the partners service: ``python -m partners [serve|migrate|asyncapi]``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from distretto_shared.app import ServiceContext, ServiceSpec, asyncapi_document, cli
from distretto_shared.app import create_app as _create
from distretto_shared.contracts import matchmaking, membership, newsletter, projects
from distretto_shared.contracts import public as contracts
from distretto_shared.logging import get_logger
from partners import api, consumers
from partners.config import Settings
from partners.delivery import DeliveryWorker
from partners.log import LogTail, Notifier
from partners.service import Deps

log = get_logger(__name__)

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class DeliveryPool:
    """The webhook delivery workers of this process and their HTTP client."""

    client: httpx.AsyncClient
    tasks: list[asyncio.Task[None]]


async def start_channels(ctx: ServiceContext) -> None:
    """The notifier (woken by each commit that appended public events) and the delivery workers."""
    settings: Settings = ctx.settings  # type: ignore[assignment]
    try:
        # Secrets sealed by a migration leave their clear bytes in dead tuples (PostgreSQL) or the
        # WAL (SQLite) until the table is rewritten: do it at each start (a small table).
        await ctx.db.scrub(["webhook_endpoint"])
    except Exception as exc:  # another process holds the table: the next start does it
        log.warning("webhook_endpoint not rewritten at start", error=str(exc))
    notifier = Notifier()
    ctx.provide(notifier)
    ctx.db.on_outbox_commit(notifier.notify)
    tail = LogTail(ctx.db, notifier, settings.stream_poll_seconds)
    ctx.provide(tail)
    ctx.on_stop.append(tail.close)
    await tail.refresh()
    client = httpx.AsyncClient(
        timeout=settings.webhook_timeout_seconds,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        trust_env=False,
    )
    deps = Deps(db=ctx.db, settings=settings, notifier=notifier)
    tasks = [
        asyncio.create_task(DeliveryWorker(deps, client).run(), name=f"webhook-worker-{i}")
        for i in range(settings.webhook_workers)
    ]
    tasks.append(asyncio.create_task(tail.run(), name="public-log-tail"))
    ctx.provide(DeliveryPool(client, tasks))


async def stop_channels(ctx: ServiceContext) -> None:
    """Stop the delivery workers (an interrupted send stays pending: it is sent again), then the client."""
    pool = ctx.singletons.get(DeliveryPool)
    if pool is None:
        return
    for task in pool.tasks:
        task.cancel()
    for task in pool.tasks:
        with contextlib.suppress(BaseException):
            await task
    await pool.client.aclose()


SPEC = ServiceSpec(
    name="partners",
    settings_cls=Settings,
    routers=[api.router],
    migrations=MIGRATIONS,
    consumers=[consumers.consumers, consumers.erasure],
    # The public topics, plus the consumed ones (harmless; lets the projector start first).
    topics=[
        *contracts.PUBLIC_TOPICS,
        membership.ORGANISATION_TOPIC,
        membership.CONTACT_TOPIC,
        membership.FIGURES_TOPIC,
        projects.PROJECT_TOPIC,
        matchmaking.OPPORTUNITY_TOPIC,
        newsletter.CAMPAIGN_TOPIC,
    ],
    on_startup=[start_channels],
    on_shutdown=[stop_channels],
    title="Distretto partners",
    description="The public catalogue for partner systems: public Kafka topics, server-sent events, webhooks.",
    published_events=list(contracts.PUBLIC_TYPES),
    manages_kafka_access=True,
    # A partner's contact address may be a person's: erased (ContactErased, or the admin clearing
    # it) and then scrubbed on disk like the other services' personal data.
    personal_tables=["partner"],
)


@functools.cache
def public_asyncapi() -> dict[str, Any]:
    """The partners' AsyncAPI 3 document: only the public topics (nothing the projector consumes)."""
    spec = ServiceSpec(
        name="partners",
        settings_cls=Settings,
        routers=[],
        migrations=MIGRATIONS,
        published_events=list(contracts.PUBLIC_TYPES),
    )
    doc = asyncapi_document(spec)
    doc["info"]["title"] = "Distretto public catalogue"
    doc["info"]["description"] = (
        "Public events for partner systems: binary-mode CloudEvents on the Kafka topics public.<aggregate>.v1; "
        "the same events, with the same ids, as server-sent events (GET /api/partners/stream) and as "
        "Standard Webhooks. See docs/partners.md."
    )
    return doc


def create_app(settings: Settings | None = None) -> FastAPI:
    """The partners service's ASGI app."""
    return _create(SPEC, settings)


main = cli(SPEC)
