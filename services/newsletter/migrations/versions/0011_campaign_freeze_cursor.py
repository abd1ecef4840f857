"""A campaign's audience is frozen into the ledger in chunks: where freezing stopped (NULL: nothing left)."""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.add_column("campaign", sa.Column("freeze_after", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("freeze_after")
