"""Backbone tables and the newsletter's tables."""

from alembic import op

from distretto_shared.migrations import create_backbone_tables

revision = "0001"
down_revision = None

# The tables are defined once, in newsletter.models; this first revision creates them as they are there.
TABLES = [
    "mailing_list",
    "subscriber",
    "subscription",
    "subscriber_interest",
    "consent_record",
    "rate_hit",
    "template",
    "campaign",
    "delivery",
    "bounce",
    "member_contact",
    "member_organisation",
    "digest_item",
]


def upgrade() -> None:
    from sqlmodel import SQLModel

    import newsletter.models  # noqa: F401

    create_backbone_tables()
    metadata = SQLModel.metadata
    metadata.create_all(bind=op.get_bind(), tables=[metadata.tables[name] for name in TABLES])


def downgrade() -> None:
    from sqlmodel import SQLModel

    import newsletter.models  # noqa: F401

    metadata = SQLModel.metadata
    metadata.drop_all(bind=op.get_bind(), tables=[metadata.tables[name] for name in TABLES])
    op.drop_table("processed_event")
    op.drop_table("outbox")
