"""Signed-webhook receipts (replays change nothing) and the suppression list of erased addresses (hashes)."""

from alembic import op

revision = "0002"
down_revision = "0001"

TABLES = ["webhook_receipt", "suppression"]


def upgrade() -> None:
    from sqlmodel import SQLModel

    import newsletter.models  # noqa: F401

    metadata = SQLModel.metadata
    metadata.create_all(bind=op.get_bind(), tables=[metadata.tables[name] for name in TABLES])


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
