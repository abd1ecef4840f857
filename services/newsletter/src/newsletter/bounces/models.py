"""Bounces, the signed webhook's receipts and the suppression list: the tables and their API shapes."""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import BaseModel, field_validator
from pydantic import Field as PField
from sqlmodel import Column, Field

from distretto_shared.conventions import HexId, Id, UtcDateTime
from newsletter import domain
from newsletter.tables import ID_CHARACTERS, Base, Strict, new_id, utcnow, valid_email


class Bounce(Base, table=True):
    __tablename__ = "bounce"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    subscriber_id: str = Field(foreign_key="subscriber.id", max_length=32, index=True, ondelete="CASCADE")
    campaign_id: str | None = Field(default=None, max_length=32)
    kind: str = Field(max_length=20)
    source: str = Field(max_length=20)
    reason: str = Field(default="", max_length=1000)
    at: UtcDateTime = Field(default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False))
    suppressed: bool = Field(default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false()))
    """The address was suppressed after this bounce (by it, or already before)."""


class BounceReport(Strict):
    """What a bounce webhook sends (a mail provider, or a mailbox scanner)."""

    email: str
    kind: domain.BounceKind
    reason: str = PField(default="", max_length=1000)
    campaign_id: HexId | None = PField(default=None, max_length=32, pattern=ID_CHARACTERS)
    """The campaign's id, either form (the ``Feedback-ID`` header of its mails carries the 32-hex one)."""

    _email = field_validator("email")(valid_email)


class BounceAccepted(BaseModel):
    """The webhook's one answer, the same whether the address is known or not (no enumeration)."""

    status: str = "accepted"
    message: str = "report received"


class WebhookReceipt(Base, table=True):
    """A signed webhook message already handled (by its ``webhook-id``): a replay changes nothing."""

    __tablename__ = "webhook_receipt"
    id: str = Field(primary_key=True, max_length=200)
    received_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class Suppression(Base, table=True):
    """An address never to be mailed again, kept only as the SHA-256 of the lower-cased address."""

    __tablename__ = "suppression"
    email_sha256: str = Field(primary_key=True, max_length=64)
    reason: str = Field(max_length=40)
    at: UtcDateTime = Field(default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False))


class BouncePublic(BaseModel):
    id: Id
    subscriber_id: Id
    campaign_id: Id | None
    kind: str
    source: str
    reason: str
    at: UtcDateTime
    suppressed: bool = False
