from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from distretto_dev.testing import DatabaseTarget
from distretto_shared.db import Database
from distretto_shared.migrations import upgrade_async
from distretto_shared.topics import ensure_topics

from .example import MIGRATIONS, TOPIC, Faults


@pytest.fixture
async def db(database: DatabaseTarget) -> AsyncIterator[Database]:
    """The example service's migrated database."""
    await upgrade_async(MIGRATIONS, database.url, database.schema)
    db = Database(database.url, schema=database.schema)
    yield db
    await db.dispose()


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> str:
    """The example topic (and its .dlq) created on the real broker; returns its physical name."""
    await ensure_topics(kafka_bootstrap, [TOPIC])
    return topic_prefix + TOPIC.name


@pytest.fixture(autouse=True)
def reset_faults() -> None:
    Faults.transient_failures = 0
    Faults.reject_seq = None
    Faults.broken_seq = None
    Faults.delay = 0.0
