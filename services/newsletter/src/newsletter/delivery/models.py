"""The delivery ledger: one row per mail, what makes delivery exactly-once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field

from distretto_shared.conventions import UtcDateTime
from newsletter.tables import Base, timestamp_column, utcnow


class Delivery(Base, table=True):
    """One mail to one recipient: the ledger row that makes delivery exactly-once.

    Campaign rows are one per (campaign, subscriber) (unique); transactional rows
    (confirmation, welcome) are unique by ``dedupe_key`` and carry their rendered content.
    Status: pending → sending (claimed with a token and a lease) → sent | failed | skipped | cancelled.
    """

    __tablename__ = "delivery"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str | None = Field(default=None, max_length=32)
    subscriber_id: str | None = Field(default=None, max_length=32)
    kind: str = Field(default="campaign", max_length=20)
    dedupe_key: str = Field(max_length=200, unique=True)
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
        sa.Index("ix_delivery_status_campaign", "status", "campaign_id", "id"),
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
