"""A campaign's public web version (announced to partners when the campaign starts)."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    # 0001 creates campaign as newsletter.models defines it today: a new database has the column.
    if "web_url" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("campaign")}:
        with op.batch_alter_table("campaign") as batch:
            batch.add_column(sa.Column("web_url", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("web_url")
