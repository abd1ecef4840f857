"""The change log's commit order on PostgreSQL without a lock held by the writers across round trips.

``index_change.seq`` is given to each entry at its transaction's COMMIT, by a deferred constraint
trigger that first takes a transaction-level advisory lock (released once the commit is visible):
seq values are handed out in commit order, so a follower that has read seq ``n`` has seen every
committed entry below it. The lock is held by the server for the commit only; before, a writer
took it with its last statement and held it over two round trips to the client. SQLite orders the
log by ``id`` (one writer at a time): its ``seq`` stays empty.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

_FUNCTION = """
CREATE FUNCTION index_change_commit_order() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    -- One key per schema (advisory locks are database-wide); the two-key space is apart from
    -- the one-key locks the services take elsewhere.
    PERFORM pg_advisory_xact_lock(hashtext('distretto-matchmaking-index'), hashtext(TG_TABLE_SCHEMA));
    UPDATE index_change SET seq = nextval('index_change_seq') WHERE id = NEW.id;
    RETURN NULL;
END
$$
"""

_TRIGGER = """
CREATE CONSTRAINT TRIGGER index_change_commit_order AFTER INSERT ON index_change
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION index_change_commit_order()
"""


def upgrade() -> None:
    op.add_column("index_change", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.create_index("ix_index_change_seq", "index_change", ["seq"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE index_change_seq")
    # Entries logged before: in id order (they were appended under the writers' lock).
    op.execute("UPDATE index_change SET seq = id")
    op.execute("SELECT setval('index_change_seq', COALESCE(MAX(id), 0) + 1, false) FROM index_change")
    op.execute(_FUNCTION)
    op.execute(_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER index_change_commit_order ON index_change")
        op.execute("DROP FUNCTION index_change_commit_order()")
        op.execute("DROP SEQUENCE index_change_seq")
    op.drop_index("ix_index_change_seq", table_name="index_change")
    op.drop_column("index_change", "seq")
