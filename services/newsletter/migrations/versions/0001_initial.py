"""Backbone tables and the newsletter's tables.

Explicit operations: the tables as the newsletter's models defined them when this revision
was written (it used to create them from the current models, which changed its meaning
whenever the models did; later revisions add what came after, each only where missing).
"""

import sqlalchemy as sa
from alembic import op

from distretto_shared.migrations import create_backbone_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_backbone_tables()
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=True),
        sa.Column("subscriber_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("smtp_server", sa.String(length=200), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("smtp_reply", sa.String(length=500), nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "subscriber_id", name="uq_delivery_campaign_subscriber"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_delivery_status_campaign", "delivery", ["status", "campaign_id", "id"], unique=False)
    op.create_table(
        "digest_item",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("detail", sa.String(length=2000), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=True),
        sa.Column("campaign_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ref"),
    )
    op.create_index(op.f("ix_digest_item_campaign_id"), "digest_item", ["campaign_id"], unique=False)
    op.create_table(
        "mailing_list",
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("visibility", sa.String(length=10), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "member_contact",
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("email_sha256", sa.String(length=64), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=False),
        sa.Column("last_name", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=10), nullable=False),
        sa.Column("consent_newsletter", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_index(op.f("ix_member_contact_email_sha256"), "member_contact", ["email_sha256"], unique=False)
    op.create_index(op.f("ix_member_contact_organisation_id"), "member_contact", ["organisation_id"], unique=False)
    op.create_table(
        "member_organisation",
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("first_joined_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("organisation_id"),
    )
    op.create_table(
        "rate_hit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rate_hit_scope_key_at", "rate_hit", ["scope", "key", "at"], unique=False)
    op.create_table(
        "subscriber",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("email_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=10), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("suppressed_reason", sa.String(length=40), nullable=True),
        sa.Column("soft_bounces", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_index(op.f("ix_subscriber_contact_id"), "subscriber", ["contact_id"], unique=False)
    op.create_index(op.f("ix_subscriber_email_sha256"), "subscriber", ["email_sha256"], unique=False)
    op.create_table(
        "template",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "bounce",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subscriber_id", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_bounce_subscriber_id"), "bounce", ["subscriber_id"], unique=False)
    op.create_table(
        "campaign",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("template_id", sa.String(length=32), nullable=False),
        sa.Column("lists", sa.JSON(), nullable=False),
        sa.Column("interests", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["template.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_campaign_status"), "campaign", ["status"], unique=False)
    op.create_table(
        "consent_record",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subscriber_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("lists", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("wording_version", sa.String(length=50), nullable=False),
        sa.Column("client_address", sa.String(length=100), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_consent_record_subscriber_id"), "consent_record", ["subscriber_id"], unique=False)
    op.create_table(
        "subscriber_interest",
        sa.Column("subscriber_id", sa.String(length=32), nullable=False),
        sa.Column("interest", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id", "interest"),
    )
    op.create_index(op.f("ix_subscriber_interest_interest"), "subscriber_interest", ["interest"], unique=False)
    op.create_table(
        "subscription",
        sa.Column("subscriber_id", sa.String(length=32), nullable=False),
        sa.Column("list_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["mailing_list.id"],
        ),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id", "list_id"),
    )
    op.create_index(op.f("ix_subscription_list_id"), "subscription", ["list_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_subscription_list_id"), table_name="subscription")
    op.drop_table("subscription")
    op.drop_index(op.f("ix_subscriber_interest_interest"), table_name="subscriber_interest")
    op.drop_table("subscriber_interest")
    op.drop_index(op.f("ix_consent_record_subscriber_id"), table_name="consent_record")
    op.drop_table("consent_record")
    op.drop_index(op.f("ix_campaign_status"), table_name="campaign")
    op.drop_table("campaign")
    op.drop_index(op.f("ix_bounce_subscriber_id"), table_name="bounce")
    op.drop_table("bounce")
    op.drop_table("template")
    op.drop_index(op.f("ix_subscriber_email_sha256"), table_name="subscriber")
    op.drop_index(op.f("ix_subscriber_contact_id"), table_name="subscriber")
    op.drop_table("subscriber")
    op.drop_index("ix_rate_hit_scope_key_at", table_name="rate_hit")
    op.drop_table("rate_hit")
    op.drop_table("member_organisation")
    op.drop_index(op.f("ix_member_contact_organisation_id"), table_name="member_contact")
    op.drop_index(op.f("ix_member_contact_email_sha256"), table_name="member_contact")
    op.drop_table("member_contact")
    op.drop_table("mailing_list")
    op.drop_index(op.f("ix_digest_item_campaign_id"), table_name="digest_item")
    op.drop_table("digest_item")
    op.drop_index("ix_delivery_status_campaign", table_name="delivery")
    op.drop_table("delivery")
    op.drop_table("processed_event")
    op.drop_table("outbox")
