"""Revision 0002 rewrites the CORDIS spellings kept by earlier versions, and back on downgrade."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from distretto_dev.testing import DatabaseTarget
from distretto_shared.migrations import alembic_config
from projects.app import MIGRATIONS
from projects.models import Deliverable, Participant, Project


async def _stored(database: DatabaseTarget, options: dict[str, Any]) -> tuple[str, list[str], tuple[str, str]]:
    engine = create_async_engine(database.url, execution_options=options)
    try:
        async with AsyncSession(engine) as session:
            status = (await session.execute(select(Project.status))).scalar_one()
            roles = sorted((await session.execute(select(Participant.role))).scalars())
            kind = (await session.execute(select(Deliverable.type, Deliverable.dissemination))).one()
            return status, roles, (kind[0], kind[1])
    finally:
        await engine.dispose()


async def test_revision_0002_rewrites_stored_cordis_spellings(database: DatabaseTarget) -> None:
    cfg = alembic_config(MIGRATIONS, database.url, database.schema)
    await asyncio.to_thread(command.upgrade, cfg, "0001")
    options: dict[str, Any] = {"schema_translate_map": {None: database.schema}} if database.schema else {}
    engine = create_async_engine(database.url, execution_options=options)
    try:
        async with AsyncSession(engine) as session, session.begin():
            project = Project(acronym="OLD", title="Stored before 0002", status="SIGNED")
            session.add(project)
            await session.flush()
            session.add_all(
                [
                    Participant(project_id=project.id, name="A", role="associatedPartner"),
                    Participant(project_id=project.id, name="B", role="thirdParty"),
                    Participant(project_id=project.id, name="C", role="coordinator"),
                    Deliverable(
                        project_id=project.id, number="D1.1", title="Plan", type="DMP", dissemination="SEN", due_month=1
                    ),
                ]
            )
    finally:
        await engine.dispose()

    await asyncio.to_thread(command.upgrade, cfg, "head")
    assert await _stored(database, options) == (
        "signed",
        ["associated_partner", "coordinator", "third_party"],
        ("dmp", "sen"),
    )
    await asyncio.to_thread(command.downgrade, cfg, "0001")
    assert await _stored(database, options) == (
        "SIGNED",
        ["associatedPartner", "coordinator", "thirdParty"],
        ("DMP", "SEN"),
    )
