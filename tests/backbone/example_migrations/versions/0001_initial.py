"""Backbone tables and the example ledger."""

import sqlalchemy as sa
from alembic import op

from distretto_shared.migrations import create_backbone_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_backbone_tables()
    op.create_table(
        "ledger_entry",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.String(50), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "credit_effect",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(50), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("credit_effect")
    op.drop_table("ledger_entry")
    op.drop_table("processed_event")
    op.drop_table("outbox")
