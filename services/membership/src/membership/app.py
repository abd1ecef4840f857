"""Assembly of the membership service: each aggregate's routes, the migrations, topics, periodic jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from distretto_shared.app import PeriodicJob, ServiceContext, ServiceSpec, cli
from distretto_shared.app import create_app as _create_app
from distretto_shared.context import Context
from distretto_shared.contracts import membership as contracts
from membership import consumers, models
from membership.config import Settings
from membership.contacts import api as contacts_api
from membership.figures import api as figures_api
from membership.figures import service as figures
from membership.lifecycle import api as lifecycle_api
from membership.lifecycle import service as lifecycle
from membership.organisations import api as organisations_api

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
TABLES = models.Base.metadata
"""Every table of the service (importing :mod:`membership.models` registers them all)."""


async def _lapse_scan(ctx: Context[Settings]) -> None:
    await lifecycle.lapse_overdue(ctx)


async def _publish_figures(ctx: Context[Settings]) -> None:
    await figures.publish_figures_if_changed(ctx)


async def _refresh_gauges(ctx: ServiceContext) -> None:
    await figures.compute_figures(ctx.context())


SPEC = ServiceSpec(
    name="membership",
    settings_cls=Settings,
    # In this order: /organisations/export and /import before /organisations/{organisation_id}.
    routers=[organisations_api.router, figures_api.router, lifecycle_api.router, contacts_api.router],
    migrations=MIGRATIONS,
    consumers=[consumers.consumers],
    topics=[contracts.ORGANISATION_TOPIC, contracts.CONTACT_TOPIC, contracts.FIGURES_TOPIC],
    published_events=[
        contracts.OrganisationRegistered,
        contracts.OrganisationUpdated,
        contracts.OrganisationJoined,
        contracts.OrganisationRejected,
        contracts.OrganisationSuspended,
        contracts.OrganisationLapsed,
        contracts.OrganisationRenewed,
        contracts.OrganisationLeft,
        contracts.ContactAdded,
        contracts.ContactUpdated,
        contracts.ContactErased,
        contracts.DistrictFiguresChanged,
    ],
    periodic=[
        PeriodicJob("membership-lapse-scan", "lapse_check_interval", _lapse_scan),
        PeriodicJob("membership-figures", "figures_interval", _publish_figures),
    ],
    on_startup=[_refresh_gauges],
    personal_tables=["contact"],
    retired_topics=[contracts.RETIRED_CONTACT_TOPIC],
    title="Distretto membership",
    description="The register of the district's organisations, their membership lifecycle, contacts and figures.",
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The membership ASGI app."""
    return _create_app(SPEC, settings)


main = cli(SPEC)


def __getattr__(name: str) -> Any:
    # ``uvicorn membership.app:app`` builds the app only when asked for it.
    if name == "app":
        return create_app()
    raise AttributeError(name)
