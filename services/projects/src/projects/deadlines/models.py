"""The deadline engine's table (notices already emitted) and the answer of a scan."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Column, ForeignKey, String, UniqueConstraint
from sqlmodel import Field

from distretto_shared.conventions import UtcDateTime
from projects.tables import Base, timestamp_field


class DeliverableNotice(Base, table=True):
    """A deadline notice already emitted: at most one per (deliverable, threshold), ever."""

    __tablename__ = "deliverable_notice"
    __table_args__ = (UniqueConstraint("deliverable_id", "threshold", name="uq_deliverable_notice"),)

    id: int | None = Field(default=None, primary_key=True)
    deliverable_id: str = Field(
        sa_column=Column(String(32), ForeignKey("deliverable.id", ondelete="CASCADE"), nullable=False)
    )
    threshold: str = Field(max_length=30)
    due_date: date
    event_id: str = Field(max_length=64)
    emitted_at: UtcDateTime = timestamp_field()


class DeadlineScanResult(Base):
    """What a deadline scan emitted."""

    today: date
    due_soon: int
    overdue: int
