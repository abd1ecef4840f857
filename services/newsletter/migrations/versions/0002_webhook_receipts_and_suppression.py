"""Signed-webhook receipts (replays change nothing) and the suppression list of erased addresses (hashes)."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def _tables() -> set[str]:
    return set(sa.inspect(op.get_bind()).get_table_names())


def upgrade() -> None:
    # A database made by 0001 when it still created the current models has these tables already.
    if {"suppression", "webhook_receipt"} <= _tables():
        return
    op.create_table(
        "suppression",
        sa.Column("email_sha256", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email_sha256"),
    )
    op.create_table(
        "webhook_receipt",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("webhook_receipt")
    op.drop_table("suppression")
