"""Pure rules of the work plan: project months → dates (the due-date convention), deliverable status
transitions."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

from projects.vocabulary import DeliverableStatus, DomainRuleError

_DELIVERABLE_TRANSITIONS: dict[DeliverableStatus, frozenset[DeliverableStatus]] = {
    DeliverableStatus.PLANNED: frozenset({DeliverableStatus.SUBMITTED, DeliverableStatus.LATE}),
    DeliverableStatus.LATE: frozenset({DeliverableStatus.SUBMITTED}),
    DeliverableStatus.SUBMITTED: frozenset({DeliverableStatus.ACCEPTED}),
    DeliverableStatus.ACCEPTED: frozenset(),
}


def check_deliverable_transition(old: DeliverableStatus, new: DeliverableStatus) -> None:
    """Raise unless a deliverable may go from ``old`` to ``new``."""
    if new not in _DELIVERABLE_TRANSITIONS[old]:
        raise DomainRuleError(f"a deliverable cannot go from {old.value} to {new.value}")


# -- project months ----------------------------------------------------------


def month_end(start: date, month: int) -> date:
    """The due date of project month ``month``.

    Convention: the start month is M1 whatever the start day, and month N's
    deadline is the **last day of calendar month N**. A project starting on
    31 January has M1 = 31 Jan, M2 = 28/29 Feb; one starting 29 Feb 2024 has
    M1 = 29 Feb 2024, M13 = 28 Feb 2025. For the usual start on the 1st this
    equals "start + N months − 1 day", the Commission's reading.
    """
    if month < 1:
        raise DomainRuleError("project months start at M1")
    index = start.year * 12 + (start.month - 1) + (month - 1)
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, calendar.monthrange(year, month0 + 1)[1])


def month_start(start: date, month: int) -> date:
    """The first day of project month ``month`` (M1 starts on the project's start date)."""
    if month < 1:
        raise DomainRuleError("project months start at M1")
    if month == 1:
        return start
    return month_end(start, month - 1) + timedelta(days=1)


def duration_months(start: date, end: date) -> int:
    """How many project months a project spans (start month and end month included)."""
    return (end.year - start.year) * 12 + (end.month - start.month) + 1


def check_month_in_project(month: int, start: date | None, end: date | None, what: str) -> None:
    """Raise when ``month`` falls outside the project's duration."""
    if month < 1:
        raise DomainRuleError(f"{what} must be M1 or later")
    if start and end and month > duration_months(start, end):
        raise DomainRuleError(f"{what} M{month} is after the project's last month M{duration_months(start, end)}")


REPORT_DUE_DAYS = 60
"""Periodic reports are due within 60 days of the end of their reporting period."""
