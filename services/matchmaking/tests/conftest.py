"""Fixtures of the matchmaking tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from distretto_dev.testing import DatabaseTarget, settings_for, wait_for
from matchmaking.config import Settings

OWNER = "0f1e2d3c-4b5a-4697-8877-665544332211"
"""The organisation (membership's id) that owns the opportunities the tests publish unless told otherwise."""


@pytest.fixture
def settings(database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str) -> Settings:
    """Settings of a matchmaking service on this test's database, broker and topics (the encoder
    worker a task of the app's process: test_encoder_process.py runs it as the child it is when served)."""
    return settings_for(Settings, database, kafka_bootstrap, index_encoder_process=False)


def opportunity(**overrides: Any) -> dict[str, Any]:
    """A valid opportunity payload (a technology offer unless overridden)."""
    body: dict[str, Any] = {
        "opportunity_type": "technology_offer",
        "title": "Automated closed-system manufacturing of CAR-T cells",
        "summary": "A Tuscan biotech offers a closed, automated bioreactor process that cuts the cost of "
        "autologous CAR-T cell therapy manufacturing and is looking for licensing partners.",
        "keywords": ["CAR-T", "cell therapy", "GMP manufacturing"],
        "technology_fields": ["cell therapy", "bioprocessing"],
        "market_fields": ["oncology"],
        "sectors": ["biotech"],
        "development_stage": "prototype",
        "country": "IT",
        "owner_organisation_id": OWNER,
    }
    body.update(overrides)
    return body


async def encoded(client: httpx.AsyncClient) -> dict[str, Any]:
    """Wait until every indexed document's items are encoded (the worker runs in the background;
    until then a new text is found by BM25 alone); returns the index statistics."""

    async def done() -> dict[str, Any] | None:
        stats = (await client.get("/index")).json()
        return stats if stats["items_pending"] == 0 and stats["changes_behind"] == 0 else None

    return await wait_for(done, what="the index's items encoded")  # type: ignore[no-any-return]


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """Publish an opportunity through the API, wait until it is fully searchable, and return it."""
    response = await client.post("/opportunities", json=opportunity(**overrides))
    assert response.status_code == 201, response.text
    await encoded(client)
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def payload() -> Any:
    """``payload(**overrides)``: a valid opportunity body."""
    return opportunity


@pytest.fixture
def publish() -> Any:
    """``await publish(client, **overrides)``: publish an opportunity through the API."""
    return create
