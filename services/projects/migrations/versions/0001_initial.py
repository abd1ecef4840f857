"""Projects, consortium, work plan, deadline notices and the member organisations read model."""

import sqlalchemy as sa
from alembic import op

from distretto_shared.migrations import create_backbone_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_backbone_tables()
    op.create_table(
        "member_organisation",
        sa.Column("organisation_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("name_key", sa.String(500), nullable=False),
        sa.Column("vat_number", sa.String(40), nullable=True),
        sa.Column("vat_key", sa.String(40), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organisation_id"),
    )
    op.create_index(op.f("ix_member_organisation_name_key"), "member_organisation", ["name_key"], unique=False)
    op.create_index(op.f("ix_member_organisation_vat_key"), "member_organisation", ["vat_key"], unique=False)
    op.create_table(
        "project",
        sa.Column("acronym", sa.String(100), nullable=False),
        sa.Column("title", sa.String(1000), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("total_cost", sa.Float(), nullable=True),
        sa.Column("ec_max_contribution", sa.Float(), nullable=True),
        sa.Column("framework_programme", sa.String(50), nullable=True),
        sa.Column("funding_scheme", sa.String(100), nullable=True),
        sa.Column("legal_basis", sa.String(100), nullable=True),
        sa.Column("master_call", sa.String(200), nullable=True),
        sa.Column("sub_call", sa.String(200), nullable=True),
        sa.Column("ec_signature_date", sa.Date(), nullable=True),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("foundation_role", sa.String(20), nullable=False),
        sa.Column("thematic_areas", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("cordis_id", sa.String(20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_project_cordis_id"), "project", ["cordis_id"], unique=True)
    op.create_table(
        "deliverable",
        sa.Column("number", sa.String(10), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("dissemination", sa.String(10), nullable=False),
        sa.Column("work_package", sa.Integer(), nullable=True),
        sa.Column("due_month", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("submitted_on", sa.Date(), nullable=True),
        sa.Column("accepted_on", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "number", name="uq_deliverable_number"),
    )
    op.create_index(op.f("ix_deliverable_due_date"), "deliverable", ["due_date"], unique=False)
    op.create_index(op.f("ix_deliverable_project_id"), "deliverable", ["project_id"], unique=False)
    op.create_index(op.f("ix_deliverable_status"), "deliverable", ["status"], unique=False)
    op.create_table(
        "milestone",
        sa.Column("number", sa.String(10), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("work_package", sa.Integer(), nullable=True),
        sa.Column("due_month", sa.Integer(), nullable=False),
        sa.Column("means_of_verification", sa.String(2000), nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reached_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "number", name="uq_milestone_number"),
    )
    op.create_index(op.f("ix_milestone_project_id"), "milestone", ["project_id"], unique=False)
    op.create_table(
        "participant",
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("short_name", sa.String(100), nullable=True),
        sa.Column("cordis_organisation_id", sa.String(20), nullable=True),
        sa.Column("vat_number", sa.String(40), nullable=True),
        sa.Column("role", sa.String(30), nullable=False),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("organisation_type", sa.String(10), nullable=True),
        sa.Column("sme", sa.Boolean(), nullable=True),
        sa.Column("city", sa.String(200), nullable=True),
        sa.Column("ec_contribution", sa.Float(), nullable=True),
        sa.Column("net_ec_contribution", sa.Float(), nullable=True),
        sa.Column("total_cost", sa.Float(), nullable=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(64), nullable=True),
        sa.Column("is_foundation", sa.Boolean(), nullable=False),
        sa.Column("name_key", sa.String(500), nullable=False),
        sa.Column("vat_key", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_participant_name_key"), "participant", ["name_key"], unique=False)
    op.create_index(op.f("ix_participant_organisation_id"), "participant", ["organisation_id"], unique=False)
    op.create_index(op.f("ix_participant_project_id"), "participant", ["project_id"], unique=False)
    op.create_index(op.f("ix_participant_vat_key"), "participant", ["vat_key"], unique=False)
    op.create_table(
        "reporting_period",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("start_month", sa.Integer(), nullable=False),
        sa.Column("end_month", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("report_due_date", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "number", name="uq_reporting_period_number"),
    )
    op.create_index(op.f("ix_reporting_period_project_id"), "reporting_period", ["project_id"], unique=False)
    op.create_table(
        "deliverable_notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deliverable_id", sa.String(length=32), nullable=False),
        sa.Column("threshold", sa.String(30), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("emitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deliverable_id"], ["deliverable.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("deliverable_id", "threshold", name="uq_deliverable_notice"),
    )
    op.create_table(
        "work_package",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("start_month", sa.Integer(), nullable=False),
        sa.Column("end_month", sa.Integer(), nullable=False),
        sa.Column("person_months", sa.Float(), nullable=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("lead_participant_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["lead_participant_id"], ["participant.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "number", name="uq_work_package_number"),
    )
    op.create_index(op.f("ix_work_package_project_id"), "work_package", ["project_id"], unique=False)


def downgrade() -> None:
    for table in (
        "work_package",
        "deliverable_notice",
        "reporting_period",
        "participant",
        "milestone",
        "deliverable",
        "project",
        "member_organisation",
        "processed_event",
        "outbox",
    ):
        op.drop_table(table)
