"""Backbone tables and the register: organisations, yearly figures, fee plans, renewals, contacts."""

import sqlalchemy as sa
from alembic import op

from distretto_shared.migrations import create_backbone_tables

revision = "0001"
down_revision = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_backbone_tables()
    op.create_table(
        "fee_plan",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("amount_eur", sa.Float(), nullable=False),
        sa.Column("period_months", sa.Integer(), nullable=False),
        sa.Column("grace_days", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "organisation",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("sectors", sa.JSON(), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("postcode", sa.String(20)),
        sa.Column("city", sa.String(100)),
        sa.Column("province", sa.String(50)),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("website", sa.String(300)),
        sa.Column("vat_number", sa.String(30)),
        sa.Column("ateco_code", sa.String(10)),
        sa.Column("description", sa.String(5000), nullable=False),
        sa.Column("competences", sa.JSON(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("size_class", sa.String(10)),
        sa.Column("latest_year", sa.Integer()),
        sa.Column("fee_plan_id", sa.String(36), sa.ForeignKey("fee_plan.id")),
        sa.Column("joined_on", sa.Date()),
        sa.Column("renewal_due", sa.Date()),
        sa.Column("status_changed_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_organisation_name", "organisation", ["name"])
    op.create_index("ix_organisation_status", "organisation", ["status"])
    op.create_index("ix_organisation_province", "organisation", ["province"])
    op.create_index("ix_organisation_size_class", "organisation", ["size_class"])
    op.create_index("ix_organisation_vat_number", "organisation", ["vat_number"])
    op.create_index("ix_organisation_renewal_due", "organisation", ["renewal_due"])
    op.create_table(
        "yearly_figures",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("staff", sa.Integer(), nullable=False),
        sa.Column("rd_staff", sa.Integer(), nullable=False),
        sa.Column("turnover_eur", sa.Float(), nullable=False),
        sa.Column("lab_m2", sa.Float(), nullable=False),
        sa.Column("patents", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("organisation_id", "year", name="uq_yearly_figures_org_year"),
    )
    op.create_index("ix_yearly_figures_organisation_id", "yearly_figures", ["organisation_id"])
    op.create_table(
        "renewal",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("amount_eur", sa.Float(), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_renewal_organisation_id", "renewal", ["organisation_id"])
    op.create_table(
        "status_change",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("from_status", sa.String(20), nullable=False),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_status_change_organisation_id", "status_change", ["organisation_id"])
    op.create_table(
        "contact",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("email", sa.String(254)),
        sa.Column("role", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(40)),
        sa.Column("language", sa.String(5), nullable=False),
        sa.Column("consent_newsletter", sa.Boolean(), nullable=False),
        sa.Column("consent_newsletter_at", TS),
        sa.Column("consent_newsletter_source", sa.String(100)),
        sa.Column("consent_data_processing", sa.Boolean(), nullable=False),
        sa.Column("consent_data_processing_at", TS),
        sa.Column("consent_data_processing_source", sa.String(100)),
        sa.Column("erased_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_contact_organisation_id", "contact", ["organisation_id"])
    op.create_index("ix_contact_email", "contact", ["email"])
    op.create_table(
        "published_figures",
        sa.Column("key", sa.String(20), primary_key=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("published_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "published_figures",
        "contact",
        "status_change",
        "renewal",
        "yearly_figures",
        "organisation",
        "fee_plan",
        "processed_event",
        "outbox",
    ):
        op.drop_table(table)
