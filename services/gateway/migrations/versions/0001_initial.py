"""Backbone tables, users and API keys."""

import sqlalchemy as sa
from alembic import op

from distretto_shared.migrations import create_backbone_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    # The gateway publishes no events; the backbone tables keep every service's database alike.
    create_backbone_tables()
    op.create_table(
        "gateway_user",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("organisation_id", sa.String(64), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gateway_user_email", "gateway_user", ["email"], unique=True)
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("organisation_id", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(254), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_key_key_hash", "api_key", ["key_hash"], unique=True)


def downgrade() -> None:
    op.drop_table("api_key")
    op.drop_table("gateway_user")
    op.drop_table("processed_event")
    op.drop_table("outbox")
