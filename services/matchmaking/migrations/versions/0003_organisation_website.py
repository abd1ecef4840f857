"""The organisation's website (from membership's events): its name is one of the forms anonymisation removes."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("organisation", sa.Column("website", sa.String(300), nullable=True))


def downgrade() -> None:
    op.drop_column("organisation", "website")
