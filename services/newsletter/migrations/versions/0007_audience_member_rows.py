"""One audience row per subscriber (member contact, organisation, consent), kept by triggers: what segments count."""

from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    from sqlmodel import SQLModel

    import newsletter.audience

    metadata = SQLModel.metadata
    tables = [metadata.tables[name] for name in newsletter.audience.MEMBER_TABLES]
    metadata.create_all(bind=op.get_bind(), tables=tables)  # checks first: a no-op where the table is
    newsletter.audience.install_member_rows(op.get_bind())


def downgrade() -> None:
    from sqlmodel import SQLModel

    import newsletter.audience

    newsletter.audience.remove_member_rows(op.get_bind())
    metadata = SQLModel.metadata
    metadata.drop_all(bind=op.get_bind(), tables=[metadata.tables[n] for n in newsletter.audience.MEMBER_TABLES])
