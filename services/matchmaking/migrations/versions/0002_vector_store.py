"""Item vectors in the database: index items, vectors by text fingerprint, the encode queue, the change log.

The one-vector-per-row columns of opportunity and organisation give way to ``text_vector``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "index_item",
        sa.Column("doc_key", sa.String(80), primary_key=True),
        sa.Column("item_key", sa.String(120), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("lang", sa.String(8), nullable=True),
        sa.Column("label", sa.String(300), nullable=False),
        sa.Column("text_hash", sa.String(64), nullable=False, index=True),
    )
    op.create_table(
        "text_vector",
        sa.Column("text_hash", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(80), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "encode_queue",
        sa.Column("text_hash", sa.String(64), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False, index=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "index_change",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("doc_key", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    for table in ("opportunity", "organisation"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("embedding")
            batch.drop_column("embedded_hash")


def downgrade() -> None:
    for table in ("opportunity", "organisation"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("embedding", sa.LargeBinary(), nullable=True))
            batch.add_column(sa.Column("embedded_hash", sa.String(64), nullable=True))
    for table in ("index_change", "encode_queue", "text_vector", "index_item"):
        op.drop_table(table)
