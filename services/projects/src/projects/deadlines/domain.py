"""Pure rules of the deadline engine: the notice one deliverable deserves today."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from projects.vocabulary import DeliverableStatus

# -- deadline engine ---------------------------------------------------------


def overdue_threshold() -> str:
    """The notice key of "overdue"."""
    return "overdue"


def due_soon_threshold(horizon: int) -> str:
    """The notice key of "due within ``horizon`` days"."""
    return f"due_soon_{horizon}"


@dataclass(frozen=True)
class DeadlineNotice:
    """What the deadline engine wants said about one deliverable today."""

    threshold: str
    kind: str
    """'due_soon' or 'overdue'"""
    horizon_days: int | None
    days: int
    """days left (due soon) or days late (overdue)"""


def deadline_notice(
    due: date, status: DeliverableStatus, today: date, horizons: Iterable[int]
) -> DeadlineNotice | None:
    """The notice a deliverable due on ``due`` deserves today, if any.

    Only unsubmitted deliverables (planned or late) get notices. Past the due
    date: overdue. Otherwise the *tightest* horizon already reached (a
    deliverable first seen 5 days before its date gets the 7-day notice, not
    a stale 30-day one too). Each (deliverable, threshold) is said once: the
    caller records it.
    """
    if status not in (DeliverableStatus.PLANNED, DeliverableStatus.LATE):
        return None
    days_left = (due - today).days
    if days_left < 0:
        return DeadlineNotice(overdue_threshold(), "overdue", None, -days_left)
    reached = sorted(h for h in set(horizons) if days_left <= h)
    if not reached:
        return None
    return DeadlineNotice(due_soon_threshold(reached[0]), "due_soon", reached[0], days_left)
