"""Partners, the public-event log, the projector's views, webhook endpoints, messages and attempts."""

import sqlalchemy as sa
from alembic import op

from distretto_shared.migrations import create_backbone_tables

revision = "0001"
down_revision = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    create_backbone_tables()
    op.create_table(
        "partner",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("api_key_id", sa.String(64), nullable=True, unique=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "public_event",
        sa.Column("seq", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("time", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        _ts("created_at"),
    )
    op.create_index("ix_public_event_event_type", "public_event", ["event_type"])
    op.create_index("ix_public_event_created_at", "public_event", ["created_at"])
    op.create_table(
        "organisation_view",
        sa.Column("organisation_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("sectors", sa.JSON(), nullable=False),
        sa.Column("province", sa.String(10), nullable=True),
        sa.Column("size_class", sa.String(20), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("member", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "project_view",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("acronym", sa.String(100), nullable=False),
    )
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("partner_id", sa.String(64), sa.ForeignKey("partner.id"), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("previous_secret", sa.String(100), nullable=True),
        _ts("previous_secret_until", True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        _ts("failing_since", True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        _ts("lease_until", True),
        _ts("created_at"),
    )
    op.create_index("ix_webhook_endpoint_partner_id", "webhook_endpoint", ["partner_id"])
    op.create_table(
        "webhook_message",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        sa.Column("replay", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("finished_at", True),
    )
    op.create_index("ix_webhook_message_endpoint_status", "webhook_message", ["endpoint_id", "status", "id"])
    op.create_table(
        "webhook_attempt",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        _ts("at"),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("worker", sa.String(64), nullable=False),
    )
    op.create_index("ix_webhook_attempt_endpoint_id", "webhook_attempt", ["endpoint_id"])
    op.create_index("ix_webhook_attempt_message_id", "webhook_attempt", ["message_id"])


def downgrade() -> None:
    for table in ("webhook_attempt", "webhook_message", "webhook_endpoint", "project_view", "organisation_view"):
        op.drop_table(table)
    op.drop_table("public_event")
    op.drop_table("partner")
