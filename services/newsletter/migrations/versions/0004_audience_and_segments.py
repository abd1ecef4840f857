"""The audience read model (organisations, sectors and keywords, projects and participations), segments,
the contact's role, the segments a campaign targets and the covering indexes segment counts read."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

CONFIRMED = sa.text("status = 'confirmed'")
INDEXES = [
    ("ix_member_contact_org_contact", "member_contact", ["organisation_id", "contact_id"], {}),
    ("ix_subscriber_contact_live", "subscriber", ["contact_id", "suppressed", "id"], {}),
    (
        "ix_subscription_confirmed",
        "subscription",
        ["subscriber_id"],
        {"postgresql_where": CONFIRMED, "sqlite_where": CONFIRMED},
    ),
]


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _indexes(table: str) -> set[str]:
    return {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(table) if i["name"]}


def upgrade() -> None:
    op.create_table(
        "audience_organisation",
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=True),
        sa.Column("size_class", sa.String(length=20), nullable=True),
        sa.Column("province", sa.String(length=50), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organisation_id"),
    )
    op.create_index(op.f("ix_audience_organisation_kind"), "audience_organisation", ["kind"], unique=False)
    op.create_index(op.f("ix_audience_organisation_province"), "audience_organisation", ["province"], unique=False)
    op.create_index(op.f("ix_audience_organisation_size_class"), "audience_organisation", ["size_class"], unique=False)
    op.create_index(op.f("ix_audience_organisation_status"), "audience_organisation", ["status"], unique=False)
    op.create_table(
        "audience_participation",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=True),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "participant_id"),
    )
    op.create_index(
        op.f("ix_audience_participation_organisation_id"), "audience_participation", ["organisation_id"], unique=False
    )
    op.create_table(
        "audience_project",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("acronym", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("project_id"),
    )
    op.create_index(op.f("ix_audience_project_acronym"), "audience_project", ["acronym"], unique=False)
    op.create_table(
        "audience_tag",
        sa.Column("facet", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("facet", "value", "organisation_id", "source"),
    )
    op.create_index(op.f("ix_audience_tag_organisation_id"), "audience_tag", ["organisation_id"], unique=False)
    op.create_table(
        "segment",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("digest", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    # 0001 created member_contact and campaign from the models of its day: a database made when
    # those already had these columns and indexes has them.
    if "role" not in _columns("member_contact"):
        op.add_column("member_contact", sa.Column("role", sa.String(200), nullable=False, server_default=""))
    if "segments" not in _columns("campaign"):
        op.add_column("campaign", sa.Column("segments", sa.JSON(), nullable=False, server_default="[]"))
    for name, table, columns, where in INDEXES:
        if name not in _indexes(table):
            op.create_index(name, table, columns, unique=False, **where)


def downgrade() -> None:
    for name, table, *_ in INDEXES:
        if name in _indexes(table):
            op.drop_index(name, table_name=table)
    op.drop_table("segment")
    op.drop_index(op.f("ix_audience_tag_organisation_id"), table_name="audience_tag")
    op.drop_table("audience_tag")
    op.drop_index(op.f("ix_audience_project_acronym"), table_name="audience_project")
    op.drop_table("audience_project")
    op.drop_index(op.f("ix_audience_participation_organisation_id"), table_name="audience_participation")
    op.drop_table("audience_participation")
    op.drop_index(op.f("ix_audience_organisation_status"), table_name="audience_organisation")
    op.drop_index(op.f("ix_audience_organisation_size_class"), table_name="audience_organisation")
    op.drop_index(op.f("ix_audience_organisation_province"), table_name="audience_organisation")
    op.drop_index(op.f("ix_audience_organisation_kind"), table_name="audience_organisation")
    op.drop_table("audience_organisation")
    if "segments" in _columns("campaign"):
        op.drop_column("campaign", "segments")
    if "role" in _columns("member_contact"):
        op.drop_column("member_contact", "role")
