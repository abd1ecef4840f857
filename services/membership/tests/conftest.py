"""Fixtures of the membership tests: a running service on SQLite and PostgreSQL, with the real broker."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from distretto_dev.testing import DatabaseTarget, service_client, settings_for
from distretto_shared.context import Context
from distretto_shared.outbox import OutboxMessage
from membership.app import create_app
from membership.config import Settings

VALID_VAT = "12345678903"
"""A partita IVA with the right check digit."""


@dataclass
class Membership:
    """A running membership service: its HTTP client and its context."""

    http: httpx.AsyncClient
    ctx: Context[Settings]
    """The service acting as itself (for driving periodic use cases)."""

    async def outbox_count(self) -> int:
        """Events written so far (published or not)."""
        async with self.ctx.db.read() as session:
            return (await session.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()

    async def outbox_types(self) -> list[str]:
        """Event types in the outbox, in order."""
        async with self.ctx.db.read() as session:
            rows = await session.execute(select(OutboxMessage.event_type).order_by(OutboxMessage.id))  # type: ignore[arg-type]
            return [r[0] for r in rows]

    valid_vat = VALID_VAT

    @staticmethod
    def payload(**fields: Any) -> dict[str, Any]:
        """A valid organisation body, with ``fields`` overriding."""
        return org_payload(**fields)

    async def create(self, **fields: Any) -> dict[str, Any]:
        """Create an organisation (201 expected) and return it."""
        response = await self.http.post("/organisations", json=org_payload(**fields))
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def post(self, path: str, json: Any = None, expect: int = 200) -> dict[str, Any]:
        """POST and check the status."""
        response = await self.http.post(path, json=json)
        assert response.status_code == expect, response.text
        return dict(response.json())

    async def get(self, path: str, expect: int = 200, **params: Any) -> Any:
        """GET and check the status."""
        response = await self.http.get(path, params=params)
        assert response.status_code == expect, response.text
        return response.json()

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of the service's /metrics (0 when absent)."""
        text = (await self.http.get("/metrics")).text
        want = sorted(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
            if m and sorted(m.group(1).split(",")) == want:
                return float(m.group(2))
        return 0.0

    async def register_snapshot(self) -> tuple[Any, ...]:
        """Everything a bad request must leave untouched: organisations, contacts, fee plans, events."""
        orgs = await self.get("/organisations", limit=500)
        contacts = await self.get("/contacts", limit=500)
        plans = await self.get("/fee-plans", limit=500)
        figures = [await self.get(f"/organisations/{o['id']}/figures") for o in orgs["items"]]
        return orgs, contacts, plans, figures, await self.outbox_count()


def org_payload(**fields: Any) -> dict[str, Any]:
    """A valid organisation body, with ``fields`` overriding."""
    body: dict[str, Any] = {
        "name": "Biotecnologie Senesi S.r.l.",
        "kind": "company",
        "sectors": ["biotech", "diagnostics"],
        "address": "Via Fiorentina 1",
        "postcode": "53100",
        "city": "Siena",
        "province": "SI",
        "country": "IT",
        "website": "https://biosenesi.example",
        "ateco_code": "72.11",
        "description": "Monoclonal antibodies for rare diseases",
        "competences": ["antibody engineering"],
        "keywords": ["antibodies", "rare diseases"],
    }
    body.update(fields)
    return body


@pytest.fixture
def settings(database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str) -> Settings:
    """Settings pointing at the test database and broker; periodic jobs slow so tests drive them."""
    return settings_for(Settings, database, kafka_bootstrap, figures_interval=3600, lapse_check_interval=3600)


@pytest.fixture
async def membership(settings: Settings) -> AsyncIterator[Membership]:
    """The service running in-process."""
    app = create_app(settings)
    async with service_client(app) as client:
        yield Membership(client, app.state.ctx.context())
