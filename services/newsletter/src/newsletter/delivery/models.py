"""The delivery ledger: one row per mail, what makes delivery exactly-once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field

from distretto_shared.conventions import UtcDateTime
from newsletter.tables import Base, timestamp_column, utcnow

# The predicates of the ledger's partial indexes (the same text in migration 0012).
TRANSACTIONAL = sa.text("campaign_id IS NULL")
TO_SEND = sa.text("status IN ('pending', 'sending')")


class Delivery(Base, table=True):
    """One mail to one recipient: the ledger row that makes delivery exactly-once.

    Campaign rows are one per (campaign, subscriber) (unique); transactional rows
    (confirmation, welcome) are unique by ``dedupe_key`` and carry their rendered content.
    Status: pending → sending (claimed with a token and a lease) → sent | failed | skipped | cancelled.

    Both secondary indexes are partial, so that a mail's three row writes (freeze, claim, outcome)
    touch as few indexes as possible: ``dedupe_key`` is indexed for transactional rows only (campaign
    rows are unique by (campaign, subscriber) already; a lookup by key names ``campaign_id IS NULL``),
    and on PostgreSQL the status index holds only the rows still to send (``pending``, ``sending``:
    what claims, lease renewals and take-backs look for) — a row that reaches its outcome leaves it.
    """

    __tablename__ = "delivery"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str | None = Field(default=None, max_length=32)
    subscriber_id: str | None = Field(default=None, max_length=32)
    kind: str = Field(default="campaign", max_length=20)
    dedupe_key: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=254)
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(sa.JSON, nullable=True))
    status: str = Field(default="pending", max_length=20)
    claim_token: str | None = Field(default=None, max_length=32)
    claimed_at: UtcDateTime | None = timestamp_column()
    attempts: int = 0
    next_attempt_at: UtcDateTime | None = timestamp_column()
    smtp_server: str | None = Field(default=None, max_length=200)
    smtp_code: int | None = None
    smtp_reply: str | None = Field(default=None, max_length=500)
    message_id: str | None = Field(default=None, max_length=300)
    sent_at: UtcDateTime | None = timestamp_column()
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "subscriber_id", name="uq_delivery_campaign_subscriber"),
        sa.Index(
            "uq_delivery_dedupe_key",
            "dedupe_key",
            unique=True,
            postgresql_where=TRANSACTIONAL,
            sqlite_where=TRANSACTIONAL,
        ),
        sa.Index(
            "ix_delivery_status_campaign",
            "status",
            "campaign_id",
            "id",
            # PostgreSQL only: SQLite's planner does not see that ``status = 'pending'`` implies this
            # predicate (it would scan the table), and its updates rewrite only the indexes of the
            # columns they change, so it has less to save.
            postgresql_where=TO_SEND,
        ),
    )


class DeliveryClaim(Base, table=True):
    """The lease of one claim (a batch of ledger rows in ``sending`` under one claim token).

    Renewing a lease writes this one row, not the batch's rows (so renewals never contend with the
    outcome writes on the ledger). Taking a dead claim back deletes its row and returns its rows to
    ``pending`` in one transaction: while this row exists, no other instance has taken them.
    """

    __tablename__ = "delivery_claim"
    token: str = Field(primary_key=True, max_length=32)
    expires_at: UtcDateTime = Field(sa_column=Column(sa.DateTime(timezone=True), nullable=False, index=True))
