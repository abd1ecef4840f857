"""Pure rules of EU project tracking: no I/O, no framework.

- project months → dates (the due-date convention),
- deliverable and project status transitions,
- the deadline engine's decision for one deliverable,
- organisation name / VAT normalisation for linking participants to members,
- CORDIS number parsing,
- portfolio figures.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum


class DomainRuleError(ValueError):
    """A rule of the domain was broken (the service turns it into a 409/422)."""


# -- vocabularies ------------------------------------------------------------


class ProjectStatus(StrEnum):
    """CORDIS statuses plus two for projects not (yet) on CORDIS."""

    PLANNED = "planned"
    ONGOING = "ongoing"
    SIGNED = "SIGNED"
    CLOSED = "CLOSED"
    TERMINATED = "TERMINATED"


class FoundationRole(StrEnum):
    """The foundation's own part in a project."""

    COORDINATOR = "coordinator"
    PARTNER = "partner"
    THIRD_PARTY = "third_party"
    SUPPORTER = "supporter"
    NONE = "none"


class ParticipantRole(StrEnum):
    """CORDIS participant roles."""

    COORDINATOR = "coordinator"
    PARTICIPANT = "participant"
    ASSOCIATED_PARTNER = "associatedPartner"
    THIRD_PARTY = "thirdParty"


class DeliverableType(StrEnum):
    """Horizon Europe deliverable types."""

    R = "R"
    DEM = "DEM"
    DEC = "DEC"
    DATA = "DATA"
    DMP = "DMP"
    ETHICS = "ETHICS"


class Dissemination(StrEnum):
    """Dissemination levels: public or sensitive."""

    PU = "PU"
    SEN = "SEN"


class DeliverableStatus(StrEnum):
    """planned → submitted → accepted; planned → late (deadline engine) → submitted."""

    PLANNED = "planned"
    LATE = "late"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"


class MilestoneStatus(StrEnum):
    """A milestone is planned until reached."""

    PLANNED = "planned"
    REACHED = "reached"


THEMATIC_AREAS = (
    "personalised_medicine",
    "oncology",
    "rare_diseases",
    "neurology",
    "maternal_child_health",
    "medical_devices",
    "diagnostics",
    "advanced_therapies",
    "digital_health",
    "infectious_diseases",
    "nutraceutics",
    "other",
)

FINAL_PROJECT_STATUSES = frozenset({ProjectStatus.CLOSED, ProjectStatus.TERMINATED})

_PROJECT_TRANSITIONS: dict[ProjectStatus, frozenset[ProjectStatus]] = {
    ProjectStatus.PLANNED: frozenset({ProjectStatus.ONGOING, ProjectStatus.SIGNED, ProjectStatus.TERMINATED}),
    ProjectStatus.ONGOING: frozenset({ProjectStatus.SIGNED, ProjectStatus.CLOSED, ProjectStatus.TERMINATED}),
    ProjectStatus.SIGNED: frozenset({ProjectStatus.ONGOING, ProjectStatus.CLOSED, ProjectStatus.TERMINATED}),
    ProjectStatus.CLOSED: frozenset(),
    ProjectStatus.TERMINATED: frozenset(),
}


def check_project_transition(old: ProjectStatus, new: ProjectStatus) -> None:
    """Raise unless a project may go from ``old`` to ``new`` (closed and terminated are final)."""
    if old != new and new not in _PROJECT_TRANSITIONS[old]:
        raise DomainRuleError(f"a project cannot go from {old.value} to {new.value}")


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


# -- organisation matching ---------------------------------------------------

_LEGAL_SUFFIXES = frozenset(
    {
        "srl",
        "srls",
        "spa",
        "sapa",
        "sas",
        "snc",
        "scarl",
        "scrl",
        "sc",
        "scpa",
        "onlus",
        "ets",
        "gmbh",
        "ag",
        "kg",
        "ug",
        "ev",
        "ltd",
        "limited",
        "plc",
        "llp",
        "inc",
        "llc",
        "corp",
        "sa",
        "sl",
        "slu",
        "sarl",
        "bv",
        "nv",
        "ab",
        "oy",
        "as",
        "aps",
        "co",
    }
)


def normalise_name(name: str) -> str:
    """An organisation name reduced for matching.

    Lower-case, accents stripped, abbreviations' dots dropped (``S.r.l.`` →
    ``srl``), other punctuation collapsed to single spaces, and trailing legal
    forms (s.r.l., s.p.a., GmbH, Ltd, …) removed.
    """
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("&", " and ")
    text = re.sub(r"[^a-z0-9]+", " ", text)
    tokens = text.split()
    # Join runs of single letters: "s r l" (from "S.r.l." or "S. r. l.") → "srl".
    joined: list[str] = []
    run = ""
    for tok in tokens:
        if len(tok) == 1 and tok.isalpha():
            run += tok
            continue
        if run:
            joined.append(run)
            run = ""
        joined.append(tok)
    if run:
        joined.append(run)
    while len(joined) > 1 and joined[-1] in _LEGAL_SUFFIXES:
        joined.pop()
    return " ".join(joined)


def normalise_vat(vat: str | None) -> str | None:
    """A VAT number reduced for matching: alphanumerics upper-cased, a country prefix dropped.

    ``IT 01234567890``, ``it01234567890`` and ``01234567890`` all give ``01234567890``.
    """
    if not vat:
        return None
    text = re.sub(r"[^A-Za-z0-9]", "", vat).upper()
    if len(text) > 2 and text[:2].isalpha() and text[2:].isdigit():
        text = text[2:]
    return text or None


# -- numbers -----------------------------------------------------------------


def parse_amount(text: str | None) -> float | None:
    """A CORDIS amount: ``3499076,25`` or ``3499076.25`` or ``3.499.076,25`` → 3499076.25; empty → None.

    Raises ``ValueError`` for anything that is not a number.
    """
    if text is None:
        return None
    s = text.strip().replace(" ", "").replace("\u00a0", "").replace("€", "")
    if not s:
        return None
    if "," in s and "." in s:
        # The separator that comes last is the decimal one.
        s = s.replace(".", "").replace(",", ".") if s.rfind(",") > s.rfind(".") else s.replace(",", "")
    elif "," in s:
        s = s.replace(",", ".")
    if not re.fullmatch(r"-?\d+(\.\d+)?", s):
        raise ValueError(f"{text!r} is not a number")
    return float(s)


# -- portfolio ---------------------------------------------------------------


@dataclass
class Bucket:
    """Count and budgets of a group of projects."""

    projects: int = 0
    total_cost: float = 0.0
    ec_max_contribution: float = 0.0

    def add(self, total_cost: float | None, ec: float | None) -> None:
        """Count one project in this bucket."""
        self.projects += 1
        self.total_cost += total_cost or 0.0
        self.ec_max_contribution += ec or 0.0


@dataclass(frozen=True)
class PortfolioProject:
    """What the portfolio needs of a project."""

    status: str
    framework_programme: str | None
    funding_scheme: str | None
    thematic_areas: list[str]
    total_cost: float | None
    ec_max_contribution: float | None
    foundation_role: str
    foundation_ec_contribution: float
    """EC contribution of the foundation's own participations in this project."""


@dataclass
class Portfolio:
    """Portfolio figures: overall, by programme, scheme, thematic area, status; the foundation's share."""

    overall: Bucket = field(default_factory=Bucket)
    by_programme: dict[str, Bucket] = field(default_factory=dict)
    by_funding_scheme: dict[str, Bucket] = field(default_factory=dict)
    by_thematic_area: dict[str, Bucket] = field(default_factory=dict)
    by_status: dict[str, Bucket] = field(default_factory=dict)
    by_foundation_role: dict[str, Bucket] = field(default_factory=dict)
    foundation_ec_contribution: float = 0.0
    foundation_projects: int = 0


def portfolio(projects: Iterable[PortfolioProject]) -> Portfolio:
    """Aggregate projects into portfolio figures.

    A project with several thematic areas counts in each of them (the areas'
    sums may exceed the overall total); one without any counts as "unassigned".
    """
    out = Portfolio()
    for p in projects:
        out.overall.add(p.total_cost, p.ec_max_contribution)
        for key, groups in (
            (p.framework_programme or "unknown", out.by_programme),
            (p.funding_scheme or "unknown", out.by_funding_scheme),
            (p.status, out.by_status),
            (p.foundation_role, out.by_foundation_role),
        ):
            groups.setdefault(key, Bucket()).add(p.total_cost, p.ec_max_contribution)
        for area in p.thematic_areas or ["unassigned"]:
            out.by_thematic_area.setdefault(area, Bucket()).add(p.total_cost, p.ec_max_contribution)
        out.foundation_ec_contribution += p.foundation_ec_contribution
        if p.foundation_role != FoundationRole.NONE:
            out.foundation_projects += 1
    return out


def foundation_role_for(participant_role: ParticipantRole) -> FoundationRole:
    """The foundation's role in a project, from its role in the consortium."""
    return {
        ParticipantRole.COORDINATOR: FoundationRole.COORDINATOR,
        ParticipantRole.PARTICIPANT: FoundationRole.PARTNER,
        ParticipantRole.ASSOCIATED_PARTNER: FoundationRole.PARTNER,
        ParticipantRole.THIRD_PARTY: FoundationRole.THIRD_PARTY,
    }[participant_role]
