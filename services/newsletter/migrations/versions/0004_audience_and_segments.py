"""The audience read model (organisations, sectors and keywords, projects and participations), segments,
the contact's role and the segments a campaign targets."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _tables() -> list[sa.Table]:
    from sqlmodel import SQLModel

    import newsletter.audience
    import newsletter.segments

    metadata = SQLModel.metadata
    return [metadata.tables[name] for name in [*newsletter.audience.TABLES, *newsletter.segments.TABLES]]


def upgrade() -> None:
    from sqlmodel import SQLModel

    SQLModel.metadata.create_all(bind=op.get_bind(), tables=_tables())
    # 0001 creates member_contact and campaign as newsletter.models defines them today: a new database has these.
    if "role" not in _columns("member_contact"):
        op.add_column("member_contact", sa.Column("role", sa.String(200), nullable=False, server_default=""))
    if "segments" not in _columns("campaign"):
        op.add_column("campaign", sa.Column("segments", sa.JSON(), nullable=False, server_default="[]"))
    import newsletter.segments

    inspector = sa.inspect(op.get_bind())
    for index in newsletter.segments.INDEXES:
        table = index.table.name  # type: ignore[union-attr]
        if index.name not in {i["name"] for i in inspector.get_indexes(table)}:
            index.create(op.get_bind())


def downgrade() -> None:
    from sqlmodel import SQLModel

    import newsletter.segments

    inspector = sa.inspect(op.get_bind())
    for index in newsletter.segments.INDEXES:
        if index.name in {i["name"] for i in inspector.get_indexes(index.table.name)}:  # type: ignore[union-attr]
            index.drop(op.get_bind())

    SQLModel.metadata.drop_all(bind=op.get_bind(), tables=_tables())
    if "segments" in _columns("campaign"):
        op.drop_column("campaign", "segments")
    if "role" in _columns("member_contact"):
        op.drop_column("member_contact", "role")
