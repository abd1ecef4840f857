"""Delivery leases in a table of their own: one row per claim, renewed and taken back apart from the ledger rows."""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "delivery_claim",
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token"),
    )
    op.create_index("ix_delivery_claim_expires_at", "delivery_claim", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_delivery_claim_expires_at", table_name="delivery_claim")
    op.drop_table("delivery_claim")
