"""member_contact.details_due: name and address are fetched from membership, not carried by events."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def _has_column() -> bool:
    # 0001 creates the tables as newsletter.models defines them today: a new database has it already.
    return "details_due" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("member_contact")}


def upgrade() -> None:
    if not _has_column():
        op.add_column(
            "member_contact", sa.Column("details_due", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    if _has_column():
        op.drop_column("member_contact", "details_due")
