"""An unsubscribe records the campaign whose link was used: a campaign's report counts them."""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.add_column("consent_record", sa.Column("campaign_id", sa.String(length=32), nullable=True))
    op.create_index("ix_consent_record_campaign_id", "consent_record", ["campaign_id"])


def downgrade() -> None:
    op.drop_index("ix_consent_record_campaign_id", table_name="consent_record")
    with op.batch_alter_table("consent_record") as batch:
        batch.drop_column("campaign_id")
