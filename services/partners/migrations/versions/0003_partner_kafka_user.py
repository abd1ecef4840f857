"""A partner's Kafka user (direct Kafka access)."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("partner") as batch:
        batch.add_column(sa.Column("kafka_user", sa.String(120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("partner") as batch:
        batch.drop_column("kafka_user")
