"""The ledger's secondary indexes become partial: fewer index entries written per mail.

``dedupe_key`` is unique among transactional rows only (campaign rows are unique by (campaign,
subscriber)); on PostgreSQL the status index keeps only the rows still to send (``pending``,
``sending``; SQLite's planner would not use it for ``status = 'pending'``, so there it stays whole). A
mail's claim and outcome updates then add no entry to the key index, and its outcome none to the status
index.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"

TRANSACTIONAL = sa.text("campaign_id IS NULL")
TO_SEND = sa.text("status IN ('pending', 'sending')")
# 0001 created the key's constraint unnamed: PostgreSQL names it so; SQLite's is found by this convention.
PG_KEY_CONSTRAINT = "delivery_dedupe_key_key"
SQLITE_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _key_index() -> None:
    op.create_index(
        "uq_delivery_dedupe_key",
        "delivery",
        ["dedupe_key"],
        unique=True,
        postgresql_where=TRANSACTIONAL,
        sqlite_where=TRANSACTIONAL,
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("delivery", naming_convention=SQLITE_NAMING, recreate="always") as batch:
            batch.drop_constraint("uq_delivery_dedupe_key", type_="unique")
        _key_index()
        return
    op.drop_constraint(PG_KEY_CONSTRAINT, "delivery", type_="unique")
    _key_index()
    op.drop_index("ix_delivery_status_campaign", table_name="delivery")
    op.create_index(
        "ix_delivery_status_campaign", "delivery", ["status", "campaign_id", "id"], postgresql_where=TO_SEND
    )


def downgrade() -> None:
    op.drop_index("uq_delivery_dedupe_key", table_name="delivery")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("delivery", naming_convention=SQLITE_NAMING) as batch:
            batch.create_unique_constraint("uq_delivery_dedupe_key", ["dedupe_key"])
        return
    op.create_unique_constraint(PG_KEY_CONSTRAINT, "delivery", ["dedupe_key"])
    op.drop_index("ix_delivery_status_campaign", table_name="delivery")
    op.create_index("ix_delivery_status_campaign", "delivery", ["status", "campaign_id", "id"])
