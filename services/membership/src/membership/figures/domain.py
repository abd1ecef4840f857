"""Pure rules of the figures: the EU size class of an enterprise and the district's aggregates.

No I/O and no framework here: everything is a function of its arguments.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from membership.lifecycle.domain import MembershipStatus
from membership.organisations.domain import OrganisationKind


class SizeClass(StrEnum):
    """EU enterprise size class (Recommendation 2003/361/EC)."""

    micro = "micro"
    small = "small"
    medium = "medium"
    large = "large"


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


class StaffAndTurnover(Protocol):
    """What the size class needs of a year's figures."""

    staff: int
    turnover_eur: float


def size_class_for(kind: str, figures: StaffAndTurnover | None) -> SizeClass | None:
    """The size class of an organisation of ``kind`` with these figures.

    The EU definition is about enterprises: universities, hospitals … get none.
    """
    if figures is None or kind != OrganisationKind.company:
        return None
    return size_class(figures.staff, figures.turnover_eur)


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
