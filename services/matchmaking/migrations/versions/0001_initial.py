"""Backbone tables; opportunities, organisations, projects, participations, matches, feedback."""

import sqlalchemy as sa
from alembic import op

from distretto_shared.migrations import create_backbone_tables

revision = "0001"
down_revision = None


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    create_backbone_tables()
    op.create_table(
        "opportunity",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("reference", sa.String(64), nullable=True, unique=True),
        sa.Column("opportunity_type", sa.String(32), nullable=False, index=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("technology_fields", sa.JSON(), nullable=False),
        sa.Column("market_fields", sa.JSON(), nullable=False),
        sa.Column("sectors", sa.JSON(), nullable=False),
        sa.Column("development_stage", sa.String(32), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("owner_organisation_id", sa.String(64), nullable=False, index=True),
        sa.Column("topic_code", sa.String(120), nullable=True),
        sa.Column("role_sought", sa.String(16), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("renewals", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("embedded_hash", sa.String(64), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "organisation",
        sa.Column("organisation_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sectors", sa.JSON(), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("competences", sa.JSON(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("embedded_hash", sa.String(64), nullable=True),
        _ts("updated_at"),
    )
    op.create_table(
        "project",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("acronym", sa.String(100), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("member_organisation_ids", sa.JSON(), nullable=False),
        _ts("updated_at"),
    )
    op.create_table(
        "participation",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("organisation_id", sa.String(64), primary_key=True, index=True),
    )
    op.create_table(
        "match",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("opportunity_id", sa.String(64), nullable=False, index=True),
        sa.Column("counterpart_type", sa.String(16), nullable=False),
        sa.Column("counterpart_id", sa.String(64), nullable=False, index=True),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("opportunity_side", sa.String(10), nullable=False),
        sa.Column("counterpart_side", sa.String(10), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("score_parts", sa.JSON(), nullable=False),
        sa.Column("explanation", sa.JSON(), nullable=False),
        sa.Column("meeting_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("meeting_place", sa.String(300), nullable=True),
        sa.Column("held_on", sa.Date(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("opportunity_id", "counterpart_type", "counterpart_id", name="uq_match_pair"),
    )
    op.create_table(
        "match_feedback",
        sa.Column("match_id", sa.String(64), primary_key=True),
        sa.Column("side", sa.String(16), primary_key=True),
        sa.Column("useful", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        _ts("created_at"),
    )


def downgrade() -> None:
    for table in ("match_feedback", "match", "participation", "project", "organisation", "opportunity"):
        op.drop_table(table)
    op.drop_table("processed_event")
    op.drop_table("outbox")
