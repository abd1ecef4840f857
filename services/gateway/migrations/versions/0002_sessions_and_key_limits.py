"""Session versions on users; expiry and scopes on API keys.

Keys issued before this revision had neither: they get an expiry 90 days from the upgrade and
the scope of the API (``/api/*``), so nothing breaks at once and every key ends unless renewed.
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("gateway_user") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("api_key") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("scopes", sa.Text(), nullable=False, server_default="[]"))
    api_key = sa.table(
        "api_key",
        sa.column("expires_at", sa.DateTime(timezone=True)),
        sa.column("scopes", sa.Text()),
    )
    expires = datetime.now(UTC) + timedelta(days=90)
    op.execute(api_key.update().values(expires_at=expires, scopes='["/api/*"]'))
    with op.batch_alter_table("api_key") as batch:
        batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("api_key") as batch:
        batch.drop_column("scopes")
        batch.drop_column("expires_at")
    with op.batch_alter_table("gateway_user") as batch:
        batch.drop_column("session_version")
