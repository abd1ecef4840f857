"""Alembic per service, applied at start-up.

A service's ``migrations/env.py`` is two lines::

    from distretto_shared.migrations import run_env
    run_env(target_metadata=SQLModel.metadata)

and its first revision calls :func:`create_backbone_tables` so the outbox and
inbox tables exist in every service's database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(script_location: Path, url: str, schema: str | None = None) -> Config:
    """An Alembic config pointing at a service's migrations folder."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["schema"] = schema
    return cfg


def upgrade(script_location: Path, url: str, schema: str | None = None) -> None:
    """Apply every migration up to head (blocking; call through ``asyncio.to_thread``)."""
    command.upgrade(alembic_config(script_location, url, schema), "head")


async def upgrade_async(script_location: Path, url: str, schema: str | None = None) -> None:
    """Apply every migration up to head from async code."""
    await asyncio.to_thread(upgrade, script_location, url, schema)


def run_env(target_metadata: Any) -> None:
    """Body of a service's ``migrations/env.py`` (online mode, async engine)."""
    cfg = context.config
    url = cfg.get_main_option("sqlalchemy.url")
    assert url
    schema = cfg.attributes.get("schema")
    connect_args: dict[str, Any] = {}
    if schema and not url.startswith("sqlite"):
        connect_args = {"server_settings": {"search_path": schema}}

    def do_run(connection: sa.Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
        async with engine.connect() as connection:
            if schema and connection.dialect.name == "postgresql":
                await connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                await connection.commit()
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run_async())


def create_backbone_tables() -> None:
    """Create the outbox and inbox tables; call from a service's first revision."""
    from alembic import op

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "id"])
    op.create_table(
        "processed_event",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
