"""Backbone tables; browser sessions and the activity feed."""

import sqlalchemy as sa
from alembic import op

from distretto_shared.migrations import create_backbone_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_backbone_tables()
    op.create_table(
        "browser_session",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("gateway_token", sa.String(4000), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("organisation_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("audience", sa.String(10), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("activity")
    op.drop_table("browser_session")
