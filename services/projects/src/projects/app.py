"""Assembly of the projects service: ``python -m projects [serve|migrate|asyncapi]``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from distretto_shared.app import PeriodicJob, ServiceSpec, cli
from distretto_shared.app import create_app as _create
from distretto_shared.context import Context
from distretto_shared.contracts import membership
from distretto_shared.contracts import projects as contracts
from distretto_shared.logging import get_logger
from projects import models
from projects.config import Settings
from projects.consortium import api as consortium_api
from projects.consortium import consumers
from projects.consortium import service as consortium
from projects.cordis import api as cordis_api
from projects.deadlines import api as deadlines_api
from projects.deadlines import service as deadlines
from projects.portfolio import api as portfolio_api
from projects.project import api as project_api
from projects.workplan import api as workplan_api

TABLES = models.Base.metadata
"""Every table of the service (importing ``models`` registers each aggregate's)."""

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

log = get_logger(__name__)


async def deadline_scan(ctx: Context[Settings]) -> None:
    """The scheduled deadline scan (exactly-once notices make overlapping runs harmless)."""
    if not ctx.settings.deadline_scan_enabled:
        return
    result = await deadlines.scan_deadlines(ctx)
    if result.due_soon or result.overdue:
        log.info("deadline scan", due_soon=result.due_soon, overdue=result.overdue, today=str(result.today))


async def link_reconcile(ctx: Context[Settings]) -> None:
    """Catch participant/organisation pairs committed at the same moment (each missed the other)."""
    linked = await consortium.reconcile_links(ctx)
    if linked:
        log.info("participants linked by reconciliation", linked=linked)


SPEC = ServiceSpec(
    name="projects",
    settings_cls=Settings,
    routers=[
        project_api.router,
        consortium_api.router,
        workplan_api.router,
        cordis_api.router,
        deadlines_api.router,
        portfolio_api.router,
    ],
    migrations=MIGRATIONS,
    consumers=[consumers.consumers],
    # Ours, plus the consumed organisation topic (harmless; lets us start before membership).
    topics=[contracts.PROJECT_TOPIC, membership.ORGANISATION_TOPIC],
    periodic=[
        PeriodicJob("deadline-scan", "deadline_scan_interval", deadline_scan),
        PeriodicJob("link-reconcile", "deadline_scan_interval", link_reconcile),
    ],
    title="Distretto projects",
    description="EU projects: CORDIS fields, consortium, work plan, deadlines, portfolio figures.",
    published_events=[
        contracts.ProjectRegistered,
        contracts.ProjectUpdated,
        contracts.ProjectStatusChanged,
        contracts.ParticipantAdded,
        contracts.ParticipantLinked,
        contracts.DeliverableSubmitted,
        contracts.DeliverableDueSoon,
        contracts.DeliverableOverdue,
        contracts.MilestoneReached,
    ],
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The projects service's ASGI app."""
    return _create(SPEC, settings)


main = cli(SPEC)
