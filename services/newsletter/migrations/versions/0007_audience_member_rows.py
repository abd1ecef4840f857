"""One audience row per subscriber (member contact, organisation, consent), kept by triggers: what segments count."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    import newsletter.audience

    if "audience_member" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(
            "audience_member",
            sa.Column("subscriber_id", sa.String(length=32), nullable=False),
            sa.Column("contact_id", sa.String(length=64), nullable=True),
            sa.Column("organisation_id", sa.String(length=64), nullable=True),
            sa.Column("consenting", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("subscriber_id"),
        )
        op.create_index(
            "ix_audience_member_organisation_consenting",
            "audience_member",
            ["organisation_id"],
            unique=False,
            postgresql_where=sa.text("consenting"),
            sqlite_where=sa.text("consenting"),
        )
    # The triggers' SQL is shared with the segment benchmark (idempotent: it re-creates them and refills the table).
    newsletter.audience.install_member_rows(op.get_bind())


def downgrade() -> None:
    import newsletter.audience

    newsletter.audience.remove_member_rows(op.get_bind())
    op.drop_index("ix_audience_member_organisation_consenting", table_name="audience_member")
    op.drop_table("audience_member")
