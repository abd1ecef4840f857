"""Pure rules of membership: the lifecycle, the EU size class, VAT numbers, renewal dates, district figures.

No I/O and no framework here: everything is a function of its arguments, so it
is tested without a database.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum


class OrganisationKind(StrEnum):
    """What kind of body an organisation is."""

    company = "company"
    university = "university"
    research_institute = "research_institute"
    hospital = "hospital"
    health_authority = "health_authority"
    foundation = "foundation"
    other = "other"


class Sector(StrEnum):
    """The seven sectors of the Tuscan life-sciences district."""

    biotech = "biotech"
    pharma = "pharma"
    medical_devices = "medical_devices"
    diagnostics = "diagnostics"
    nutraceutics = "nutraceutics"
    cosmeceutics = "cosmeceutics"
    ict_life_sciences = "ict_life_sciences"


class MembershipStatus(StrEnum):
    """Where an organisation stands in the membership lifecycle."""

    applied = "applied"
    active = "active"
    rejected = "rejected"
    suspended = "suspended"
    lapsed = "lapsed"
    left = "left"


class OrganisationOrder(StrEnum):
    """How the register can be sorted: a column, ascending, or with a leading ``-`` descending."""

    name = "name"
    name_desc = "-name"
    kind = "kind"
    kind_desc = "-kind"
    status = "status"
    status_desc = "-status"
    province = "province"
    province_desc = "-province"
    size_class = "size_class"
    size_class_desc = "-size_class"
    joined_on = "joined_on"
    joined_on_desc = "-joined_on"
    renewal_due = "renewal_due"
    renewal_due_desc = "-renewal_due"
    created_at = "created_at"
    created_at_desc = "-created_at"

    @property
    def column(self) -> str:
        """The column sorted on."""
        return self.value.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


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


class SizeClass(StrEnum):
    """EU enterprise size class (Recommendation 2003/361/EC)."""

    micro = "micro"
    small = "small"
    medium = "medium"
    large = "large"


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


def allowed_actions(status: MembershipStatus) -> list[LifecycleAction]:
    """Actions legal from ``status``."""
    return [a for (s, a) in TRANSITIONS if s is status]


# -- EU size class -----------------------------------------------------------

# (class, staff strictly below, turnover at most) — Recommendation 2003/361/EC, article 2.
# The register keeps no balance sheet, so only the turnover ceiling is applied.
SIZE_THRESHOLDS: tuple[tuple[SizeClass, int, float], ...] = (
    (SizeClass.micro, 10, 2_000_000),
    (SizeClass.small, 50, 10_000_000),
    (SizeClass.medium, 250, 50_000_000),
)


def size_class(staff: int, turnover_eur: float) -> SizeClass:
    """The smallest class whose staff and turnover ceilings the enterprise stays within."""
    for cls, staff_below, turnover_max in SIZE_THRESHOLDS:
        if staff < staff_below and turnover_eur <= turnover_max:
            return cls
    return SizeClass.large


# -- VAT numbers -------------------------------------------------------------


def partita_iva_check_digit(first_ten: str) -> int:
    """The check digit of an Italian partita IVA from its first ten digits (Luhn variant)."""
    total = 0
    for i, ch in enumerate(first_ten):
        d = int(ch)
        if i % 2 == 1:  # the 2nd, 4th … digit is doubled, minus 9 when above 9
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def is_valid_partita_iva(number: str) -> bool:
    """True for eleven digits whose last is the right check digit."""
    return bool(re.fullmatch(r"\d{11}", number)) and partita_iva_check_digit(number[:10]) == int(number[10])


def normalise_vat(vat: str, country: str) -> str:
    """The VAT number as stored: Italian ones as 11 checked digits, others upper-cased without spaces.

    Raises ``ValueError`` with a sentence a user understands.
    """
    compact = re.sub(r"[\s.\-]", "", vat).upper()
    if not compact:
        raise ValueError("VAT number is empty")
    if country.upper() != "IT":
        if not re.fullmatch(r"[A-Z0-9]{2,20}", compact):
            raise ValueError(f"VAT number {vat!r} has characters other than letters and digits")
        return compact
    if compact.startswith("IT"):
        compact = compact[2:]
    if not re.fullmatch(r"\d{11}", compact):
        raise ValueError(f"Italian VAT number (partita IVA) must have 11 digits, got {vat!r}")
    if not is_valid_partita_iva(compact):
        raise ValueError(f"Italian VAT number (partita IVA) {vat!r} has a wrong check digit")
    return compact


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


def email_sha256(email: str) -> str:
    """SHA-256 of the lower-cased, trimmed email: how services find an erased person without the address."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


# -- District figures --------------------------------------------------------


@dataclass(frozen=True)
class MemberSnapshot:
    """What the district figures need of one organisation."""

    status: str
    kind: str
    sectors: tuple[str, ...]
    size_class: str | None
    year: int | None = None
    staff: int = 0
    rd_staff: int = 0
    turnover_eur: float = 0
    lab_m2: float = 0
    patents: int = 0


@dataclass
class DistrictFigures:
    """Aggregates of the register; the payload of DistrictFiguresChanged without its timestamp."""

    year: int | None = None
    members_total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    by_sector: dict[str, int] = field(default_factory=dict)
    by_size_class: dict[str, int] = field(default_factory=dict)
    companies: int = 0
    staff: int = 0
    rd_staff: int = 0
    turnover_eur: float = 0
    lab_m2: float = 0
    patents: int = 0


def district_figures(members: Iterable[MemberSnapshot]) -> DistrictFigures:
    """Aggregate the register.

    ``by_status`` counts every organisation in the register; ``members_total``,
    the other breakdowns and the totals cover active members only, each with its
    latest yearly figures (``year`` is the most recent of those years).
    """
    status: Counter[str] = Counter()
    kind: Counter[str] = Counter()
    sector: Counter[str] = Counter()
    size: Counter[str] = Counter()
    out = DistrictFigures()
    for m in members:
        status[m.status] += 1
        if m.status != MembershipStatus.active:
            continue
        out.members_total += 1
        kind[m.kind] += 1
        sector.update(set(m.sectors))
        if m.size_class:
            size[m.size_class] += 1
        if m.kind == OrganisationKind.company:
            out.companies += 1
        if m.year is not None:
            out.year = max(out.year or m.year, m.year)
            out.staff += m.staff
            out.rd_staff += m.rd_staff
            out.turnover_eur += m.turnover_eur
            out.lab_m2 += m.lab_m2
            out.patents += m.patents
    out.by_status = dict(sorted(status.items()))
    out.by_kind = dict(sorted(kind.items()))
    out.by_sector = dict(sorted(sector.items()))
    out.by_size_class = dict(sorted(size.items()))
    return out
