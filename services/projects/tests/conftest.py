"""Fixtures of the projects tests: a running service on SQLite and PostgreSQL, with the real broker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from distretto_dev.testing import DatabaseTarget, service_client, settings_for
from distretto_shared.app import ServiceContext
from distretto_shared.outbox import OutboxMessage
from projects.app import create_app
from projects.config import Settings
from projects.models import (
    Deliverable,
    DeliverableNotice,
    MemberOrganisation,
    Milestone,
    Participant,
    Project,
    ReportingPeriod,
    WorkPackage,
)

FIXTURES = Path(__file__).parent / "fixtures"

TABLES = (Project, Participant, WorkPackage, Deliverable, Milestone, ReportingPeriod, DeliverableNotice)


def fixture_text(name: str) -> str:
    """A fixture file's content."""
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _local_state(data_dir: Path) -> Path:
    """Relay lock files of the test apps go to the test's folder."""
    return data_dir


def make_settings(database: DatabaseTarget, kafka_bootstrap: str, **overrides: Any) -> Settings:
    """Settings pointing the service at the test database and broker (scheduled scan off: tests drive it)."""
    return settings_for(Settings, database, kafka_bootstrap, **{"deadline_scan_enabled": False, **overrides})


@dataclass
class ProjectsService:
    """A running projects service: its HTTP client and its context."""

    http: httpx.AsyncClient
    ctx: ServiceContext

    async def call(self, method: str, path: str, json: Any = None, expect: int = 200, **kw: Any) -> Any:
        """Send a request and check its status; returns the JSON body (None for 204)."""
        response = await self.http.request(method, path, json=json, **kw)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return None if response.status_code == 204 else response.json()

    async def post(self, path: str, json: Any = None, expect: int = 201, **kw: Any) -> Any:
        """POST (201 expected by default)."""
        return await self.call("POST", path, json, expect, **kw)

    async def get(self, path: str, expect: int = 200, **params: Any) -> Any:
        """GET with query parameters."""
        return await self.call("GET", path, None, expect, params=params)

    async def project(self, **fields: Any) -> dict[str, Any]:
        """Register a project (defaults: 36 months from 1 Jan 2025)."""
        body = {
            "acronym": "TESTPROJ",
            "title": "A test project",
            "status": "SIGNED",
            "start_date": "2025-01-01",
            "end_date": "2027-12-31",
            "framework_programme": "HORIZON",
            "funding_scheme": "HORIZON-RIA",
            "thematic_areas": ["oncology"],
        } | fields
        return dict(await self.post("/projects", body))

    async def snapshot(self) -> dict[str, int]:
        """Row counts of every table plus the outbox: compared before and after a refused request."""
        counts: dict[str, int] = {}
        async with self.ctx.db.read() as session:
            for model in (*TABLES, MemberOrganisation, OutboxMessage):
                counts[model.__tablename__] = (  # type: ignore[attr-defined]
                    await session.execute(select(func.count()).select_from(model))
                ).scalar_one()
        return counts

    async def outbox(self) -> list[dict[str, Any]]:
        """The events written to the outbox, in order: their type and their data."""
        async with self.ctx.db.read() as session:
            query = select(OutboxMessage.event_type, OutboxMessage.payload).order_by(OutboxMessage.id)  # type: ignore[arg-type]
            return [{"type": kind, "data": json.loads(payload)} for kind, payload in await session.execute(query)]

    async def outbox_types(self) -> list[str]:
        """Event types written to the outbox, in order."""
        async with self.ctx.db.read() as session:
            rows = await session.execute(select(OutboxMessage.event_type).order_by(OutboxMessage.id))  # type: ignore[arg-type]
            return [r[0] for r in rows]


@pytest.fixture
async def svc(database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[ProjectsService]:
    """The projects service running on the test database and the real broker."""
    app = create_app(make_settings(database, kafka_bootstrap))
    async with service_client(app) as client:
        yield ProjectsService(client, app.state.ctx)
