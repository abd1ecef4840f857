"""Segments drive the automations: a segment's welcome flag and digest sections, and the sectors of a digest line."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

COLUMNS = [
    ("segment", sa.Column("welcome", sa.Boolean(), nullable=False, server_default=sa.false())),
    ("segment", sa.Column("digest_sections", sa.JSON(), nullable=False, server_default="[]")),
    ("digest_item", sa.Column("sectors", sa.JSON(), nullable=False, server_default="[]")),
]


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    # 0001 and 0004 create their tables as the models define them today: a new database has these.
    for table, column in COLUMNS:
        if column.name not in _columns(table):
            op.add_column(table, column.copy())


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        if column.name in _columns(table):
            with op.batch_alter_table(table) as batch:
                batch.drop_column(column.name)
