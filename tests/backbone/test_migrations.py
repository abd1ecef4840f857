"""One metadata per service, one migration style, no drift between migrations and models.

Every service's tables live on that service's own ``MetaData`` (never SQLModel's global one),
and a new database migrated to head by the service's Alembic revisions has exactly the
tables, columns, types, indexes and constraints its models declare — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from distretto_shared.migrations import drift, heads
from distretto_shared.tables import BACKBONE
from distretto_shared.testing import DatabaseTarget

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/migrations"))
# Modules holding table models besides <service>.models (imported by the service's migrations/env.py).
EXTRA_MODELS = {"newsletter": ["newsletter.audience", "newsletter.segments"]}


def service_metadata(service: str) -> sa.MetaData:
    """The service's own metadata, every table module imported."""
    for module in EXTRA_MODELS.get(service, []):
        importlib.import_module(module)
    metadata = importlib.import_module(f"{service}.models").Base.metadata
    assert isinstance(metadata, sa.MetaData)
    return metadata


def test_every_service_is_checked() -> None:
    assert {"membership", "projects", "newsletter", "matchmaking", "partners", "gateway", "console"} <= set(SERVICES)


def test_each_service_has_its_own_metadata() -> None:
    """No table on SQLModel's global metadata; a service's metadata holds its tables and the backbone's only."""
    backbone = set(BACKBONE.metadata.tables)
    assert backbone == {"outbox", "processed_event"}
    seen: dict[int, str] = {}
    for service in SERVICES:
        metadata = service_metadata(service)
        assert id(metadata) not in seen, f"{service} shares its metadata with {seen.get(id(metadata))}"
        seen[id(metadata)] = service
        assert backbone <= set(metadata.tables), f"{service}: backbone tables missing"
        package = importlib.import_module(service).__name__
        mapped = {
            m.local_table.name
            for m in importlib.import_module(f"{service}.models").Base._sa_registry.mappers
            if m.class_.__module__.split(".")[0] == package
        }
        assert set(metadata.tables) == mapped | backbone, f"{service}: tables of another service or of nothing"
    assert dict(SQLModel.metadata.tables) == {}, "tables on SQLModel's global metadata"


@pytest.mark.parametrize("service", SERVICES)
def test_one_head_and_explicit_revisions(service: str) -> None:
    """One head per service; no revision creates tables from the current models."""
    migrations = ROOT / "services" / service / "migrations"
    assert len(heads(migrations)) == 1, f"{service} has several heads: {heads(migrations)}"
    env = (migrations / "env.py").read_text()
    assert "target_metadata=None" not in env and "Base.metadata" in env
    for revision in sorted((migrations / "versions").glob("*.py")):
        text = revision.read_text()
        for forbidden in ("create_all(", "drop_all(", "SQLModel.metadata", ".models import"):
            assert forbidden not in text, f"{revision.name} uses {forbidden} (write explicit operations)"


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_the_models(service: str, database: DatabaseTarget) -> None:
    """A new database migrated to head is what the models say: else the differences, one per line."""
    metadata = service_metadata(service)
    differences = await drift(ROOT / "services" / service / "migrations", metadata, database.url, database.schema)
    assert not differences, f"{service} on {database.backend}: migrations and models differ:\n" + "\n".join(differences)
