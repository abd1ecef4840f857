"""Webhook signing secrets stored sealed (encrypted with the installation's PARTNERS_SECRET_KEY).

The columns grow to hold a Fernet token, and every secret still in the clear is sealed. The key
comes from the service's settings (passed by the start-up and ``migrate``), else from
``PARTNERS_SECRET_KEY``; without it a database holding clear secrets is not migrated (the error
says which variable to set) rather than left half done. The clear values' old bytes are zeroed on
SQLite (``secure_delete``); on PostgreSQL the service rewrites the table at start-up
(``VACUUM FULL``, see ``partners.app``).
"""

import os
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from distretto_shared.sealing import Sealer, is_sealed

revision = "0004"
down_revision = "0003"

PURPOSE = "partners.webhook-signing-secret"  # partners.config.WEBHOOK_SECRET_PURPOSE, frozen here

endpoint = sa.table(
    "webhook_endpoint",
    sa.column("id", sa.String()),
    sa.column("secret", sa.String()),
    sa.column("previous_secret", sa.String()),
)


def _sealer() -> Sealer:
    settings: Any = context.config.attributes.get("settings")
    if settings is not None and hasattr(settings, "webhook_sealer") and settings.secret_key:
        return settings.webhook_sealer()  # type: ignore[no-any-return]
    key = os.environ.get("PARTNERS_SECRET_KEY", "")
    if not key:
        raise RuntimeError(
            "partners migration 0004 seals the webhook signing secrets: set PARTNERS_SECRET_KEY "
            "(the installation's key; `make up` / `make secrets` generate it)"
        )
    return Sealer(PURPOSE, key, os.environ.get("PARTNERS_SECRET_KEY_PREVIOUS", ""))


def _convert(seal: bool) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(endpoint.c.id, endpoint.c.secret, endpoint.c.previous_secret)).all()
    todo = [r for r in rows if any(v and is_sealed(v) != seal for v in (r.secret, r.previous_secret))]
    if not todo:
        return
    sealer = _sealer()
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("PRAGMA secure_delete=ON")  # the clear values' cells are zeroed, not left free

    def convert(value: str | None) -> str | None:
        if not value or is_sealed(value) == seal:
            return value
        return sealer.seal(value) if seal else sealer.open(value)

    for row in todo:
        bind.execute(
            sa.update(endpoint)
            .where(endpoint.c.id == row.id)
            .values(secret=convert(row.secret), previous_secret=convert(row.previous_secret))
        )


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoint") as batch:
        batch.alter_column("secret", existing_type=sa.String(100), type_=sa.String(300), existing_nullable=False)
        batch.alter_column(
            "previous_secret", existing_type=sa.String(100), type_=sa.String(300), existing_nullable=True
        )
    _convert(seal=True)


def downgrade() -> None:
    _convert(seal=False)
    with op.batch_alter_table("webhook_endpoint") as batch:
        batch.alter_column("secret", existing_type=sa.String(300), type_=sa.String(100), existing_nullable=False)
        batch.alter_column(
            "previous_secret", existing_type=sa.String(300), type_=sa.String(100), existing_nullable=True
        )
