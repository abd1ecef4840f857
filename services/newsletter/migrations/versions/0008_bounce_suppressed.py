"""A bounce records whether the address was suppressed after it (``GET /bounces`` shows it)."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    # 0001 creates bounce as newsletter.models defines it today: a new database has the column.
    if "suppressed" in _columns("bounce"):
        return
    op.add_column("bounce", sa.Column("suppressed", sa.Boolean(), nullable=False, server_default=sa.false()))
    # Bounces recorded before: those of an address suppressed by a bounce or a complaint.
    op.execute(
        "UPDATE bounce SET suppressed = true WHERE subscriber_id IN (SELECT id FROM subscriber WHERE suppressed = true "
        "AND (suppressed_reason LIKE '%-bounce' OR suppressed_reason = 'complaint'))"
    )


def downgrade() -> None:
    if "suppressed" in _columns("bounce"):
        with op.batch_alter_table("bounce") as batch:
            batch.drop_column("suppressed")
