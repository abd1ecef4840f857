"""A partner's contact address and the notice of a disabled endpoint."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("partner") as batch:
        batch.add_column(sa.Column("contact_email", sa.String(320), nullable=True))
    with op.batch_alter_table("webhook_endpoint") as batch:
        batch.add_column(sa.Column("notice_due", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("notice_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("notice_error", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoint") as batch:
        for name in ("notice_error", "notified_at", "notice_attempt_at", "notice_due"):
            batch.drop_column(name)
    with op.batch_alter_table("partner") as batch:
        batch.drop_column("contact_email")
