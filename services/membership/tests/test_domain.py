"""Pure rules: the lifecycle table, the EU size class at its boundaries, partita IVA, renewals, district figures."""

from __future__ import annotations

from datetime import date

import pytest

from membership.contacts import domain as contacts
from membership.figures import domain as figures_domain
from membership.figures.domain import SizeClass
from membership.lifecycle import domain as lifecycle
from membership.lifecycle.domain import IllegalTransition, LifecycleAction, MembershipStatus
from membership.organisations import domain as organisations

S, A = MembershipStatus, LifecycleAction

LEGAL = {
    (S.applied, A.approve): S.active,
    (S.applied, A.reject): S.rejected,
    (S.active, A.suspend): S.suspended,
    (S.suspended, A.reinstate): S.active,
    (S.active, A.lapse): S.lapsed,
    (S.active, A.renew): S.active,
    (S.lapsed, A.renew): S.active,
    (S.applied, A.leave): S.left,
    (S.active, A.leave): S.left,
    (S.rejected, A.leave): S.left,
    (S.suspended, A.leave): S.left,
    (S.lapsed, A.leave): S.left,
}
"""Written out by hand from the issue, not derived from the code under test."""

ALL_PAIRS = [(s, a) for s in MembershipStatus for a in LifecycleAction]


@pytest.mark.parametrize(("status", "action"), ALL_PAIRS, ids=[f"{s}-{a}" for s, a in ALL_PAIRS])
def test_every_status_and_action(status: MembershipStatus, action: LifecycleAction) -> None:
    if (status, action) in LEGAL:
        assert lifecycle.next_status(status, action) is LEGAL[(status, action)]
        assert action in lifecycle.allowed_actions(status)
    else:
        with pytest.raises(IllegalTransition) as info:
            lifecycle.next_status(status, action)
        message = str(info.value)
        assert f"cannot {action.value}" in message and status.value in message
        assert action not in lifecycle.allowed_actions(status)


def test_left_is_final() -> None:
    assert lifecycle.allowed_actions(S.left) == []
    assert "final state" in str(IllegalTransition(S.left, A.approve))


@pytest.mark.parametrize(
    ("staff", "turnover", "expected"),
    [
        (0, 0, SizeClass.micro),
        (9, 2_000_000, SizeClass.micro),
        (10, 2_000_000, SizeClass.small),  # staff at the micro ceiling
        (9, 2_000_000.01, SizeClass.small),  # turnover just above the micro ceiling
        (49, 10_000_000, SizeClass.small),
        (50, 10_000_000, SizeClass.medium),
        (49, 10_000_001, SizeClass.medium),
        (249, 50_000_000, SizeClass.medium),
        (250, 50_000_000, SizeClass.large),
        (249, 50_000_001, SizeClass.large),
        (3, 60_000_000, SizeClass.large),  # a few people with a big turnover are not an SME
        (1000, 1_000_000, SizeClass.large),
    ],
)
def test_eu_size_class_boundaries(staff: int, turnover: float, expected: SizeClass) -> None:
    assert figures_domain.size_class(staff, turnover) is expected


@pytest.mark.parametrize("number", ["12345678903", "00743110157", "01114601006"])
def test_valid_partite_iva(number: str) -> None:
    assert organisations.is_valid_partita_iva(number)
    assert organisations.normalise_vat(f"IT {number[:5]} {number[5:]}", "IT") == number


@pytest.mark.parametrize(
    ("vat", "reason"),
    [
        ("12345678901", "check digit"),
        ("12345678904", "check digit"),
        ("1234567890", "11 digits"),
        ("IT1234567890A", "11 digits"),
        ("", "empty"),
    ],
)
def test_invalid_partite_iva(vat: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        organisations.normalise_vat(vat, "IT")


def test_foreign_vat_numbers_are_taken_as_given() -> None:
    assert organisations.normalise_vat("de 123 456 789", "DE") == "DE123456789"
    with pytest.raises(ValueError, match="letters and digits"):
        organisations.normalise_vat("FR12/34", "FR")


def test_renewal_dates() -> None:
    assert lifecycle.add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert lifecycle.add_months(date(2024, 11, 15), 12) == date(2025, 11, 15)
    assert lifecycle.add_months(date(2024, 11, 15), 3) == date(2025, 2, 15)
    due = date(2025, 1, 31)
    assert not lifecycle.renewal_overdue(due, 30, date(2025, 3, 2))  # the 30th day of grace
    assert lifecycle.renewal_overdue(due, 30, date(2025, 3, 3))
    assert not lifecycle.renewal_overdue(None, 0, date(2030, 1, 1))
    # An active member paying early extends its period; a lapsed one starts anew on the day it pays.
    assert lifecycle.renewal_period(due, date(2025, 1, 10), 12, S.active) == (due, date(2026, 1, 31))
    assert lifecycle.renewal_period(due, date(2025, 6, 1), 12, S.lapsed) == (date(2025, 6, 1), date(2026, 6, 1))


def test_email_hash_ignores_case_and_spaces() -> None:
    assert contacts.email_sha256(" Anna.Rossi@Example.IT ") == contacts.email_sha256("anna.rossi@example.it")
    assert len(contacts.email_sha256("a@b.it")) == 64


def test_district_figures_count_active_members_with_their_latest_figures() -> None:
    m = figures_domain.MemberSnapshot
    figures = figures_domain.district_figures(
        [
            m("active", "company", ("biotech", "pharma"), "small", 2024, 20, 5, 3e6, 100, 2),
            m("active", "company", ("biotech",), "micro", 2023, 5, 1, 1e6, 50, 1),
            m("active", "university", (), None),
            m("applied", "company", ("pharma",), "large", 2024, 900, 100, 1e9, 1000, 50),
            m("left", "company", ("pharma",), None),
        ]
    )
    assert figures.members_total == 3
    assert figures.by_status == {"active": 3, "applied": 1, "left": 1}
    assert figures.by_kind == {"company": 2, "university": 1}
    assert figures.by_sector == {"biotech": 2, "pharma": 1}
    assert figures.by_size_class == {"micro": 1, "small": 1}
    assert figures.companies == 2
    assert (figures.year, figures.staff, figures.rd_staff, figures.turnover_eur) == (2024, 25, 6, 4e6)
    assert (figures.lab_m2, figures.patents) == (150, 3)


ANNOUNCED = {S.active: "joined", S.rejected: "rejected", S.suspended: "suspended", S.lapsed: "lapsed", S.left: "left"}
"""The event each new status publishes, written out by hand."""


@pytest.mark.parametrize(("status", "action"), sorted(LEGAL), ids=[f"{s}-{a}" for s, a in sorted(LEGAL)])
def test_a_transition_decides_its_one_event(status: MembershipStatus, action: LifecycleAction) -> None:
    step = lifecycle.transition(status, action)
    after = LEGAL[(status, action)]
    assert (step.before, step.after) == (status, after)
    # A renewal of an active member changes no status and announces nothing; every other step one event.
    assert step.announce == (None if after == status else ANNOUNCED[after])
    assert step.first_join == (status is S.applied and after is S.active)


def test_an_illegal_transition_decides_nothing() -> None:
    with pytest.raises(IllegalTransition):
        lifecycle.transition(S.rejected, A.approve)
