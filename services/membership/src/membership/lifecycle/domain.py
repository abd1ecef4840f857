"""Pure rules of the membership lifecycle: statuses, actions, the transition table, renewal dates.

No I/O and no framework here: everything is a function of its arguments, so it is tested
without a database.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum


class MembershipStatus(StrEnum):
    """Where an organisation stands in the membership lifecycle."""

    applied = "applied"
    active = "active"
    rejected = "rejected"
    suspended = "suspended"
    lapsed = "lapsed"
    left = "left"


class LifecycleAction(StrEnum):
    """What can happen to a membership."""

    approve = "approve"
    reject = "reject"
    suspend = "suspend"
    reinstate = "reinstate"
    lapse = "lapse"
    """The scheduled scan does this when a renewal is overdue past the grace period; staff can too
    (``POST /organisations/{id}/lapse``: a payment known to be refused before the grace period ends)."""
    renew = "renew"
    leave = "leave"


S = MembershipStatus
A = LifecycleAction

TRANSITIONS: dict[tuple[MembershipStatus, LifecycleAction], MembershipStatus] = {
    (S.applied, A.approve): S.active,
    (S.applied, A.reject): S.rejected,
    (S.active, A.suspend): S.suspended,
    (S.suspended, A.reinstate): S.active,
    (S.active, A.lapse): S.lapsed,
    # Paying the renewal keeps an active member active (and extends its period) …
    (S.active, A.renew): S.active,
    # … and brings a lapsed one back.
    (S.lapsed, A.renew): S.active,
    **{(s, A.leave): S.left for s in MembershipStatus if s is not S.left},
}
"""The whole lifecycle: (status, action) → new status. Anything not listed is illegal."""


class IllegalTransition(Exception):
    """The action is not allowed from the current status."""

    def __init__(self, status: MembershipStatus, action: LifecycleAction) -> None:
        allowed = ", ".join(a.value for a in allowed_actions(status)) or "none (final state)"
        super().__init__(
            f"cannot {action.value} a membership that is {status.value}; allowed from {status.value}: {allowed}"
        )
        self.status = status
        self.action = action


def next_status(status: MembershipStatus, action: LifecycleAction) -> MembershipStatus:
    """The status after ``action``; raises :class:`IllegalTransition` when the lifecycle forbids it."""
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        raise IllegalTransition(status, action) from None


class Announcement(StrEnum):
    """The event a transition publishes (the contract classes of ``membership.organisations``)."""

    joined = "joined"
    rejected = "rejected"
    suspended = "suspended"
    lapsed = "lapsed"
    left = "left"


ANNOUNCED_BY: dict[MembershipStatus, Announcement] = {
    S.active: Announcement.joined,
    S.rejected: Announcement.rejected,
    S.suspended: Announcement.suspended,
    S.lapsed: Announcement.lapsed,
    S.left: Announcement.left,
}
"""The event of a change of status, by the new status (a renewal of an active member changes none)."""


@dataclass(frozen=True)
class Transition:
    """What an action does to a membership: the new status and the one event it publishes (if any)."""

    before: MembershipStatus
    after: MembershipStatus
    announce: Announcement | None

    @property
    def first_join(self) -> bool:
        """An application approved (not a suspended or lapsed member coming back)."""
        return self.before is MembershipStatus.applied and self.after is MembershipStatus.active


def transition(status: MembershipStatus, action: LifecycleAction) -> Transition:
    """The whole decision of ``action`` on a membership that is ``status``: new status and event.

    Raises :class:`IllegalTransition` when the lifecycle forbids it. The caller applies it to the
    organisation it loaded with its row locked, so two conflicting actions decide one after the other.
    """
    after = next_status(status, action)
    return Transition(status, after, None if after == status else ANNOUNCED_BY[after])


def allowed_actions(status: MembershipStatus) -> list[LifecycleAction]:
    """Actions legal from ``status``."""
    return [a for (s, a) in TRANSITIONS if s is status]


# -- Renewals ----------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months (the 31st becomes the month's last day)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def renewal_overdue(renewal_due: date | None, grace_days: int, today: date) -> bool:
    """True when the renewal date plus the grace period has passed."""
    return renewal_due is not None and today > renewal_due + timedelta(days=grace_days)


def renewal_period(
    renewal_due: date | None, paid_on: date, period_months: int, status: MembershipStatus
) -> tuple[date, date]:
    """The period a renewal pays for.

    An active member extends its current period (paying early loses nothing);
    a lapsed member starts a new period on the day it pays.
    """
    start = renewal_due if status is MembershipStatus.active and renewal_due is not None else paid_on
    return start, add_months(start, period_months)
