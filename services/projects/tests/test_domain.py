"""Pure rules: project months, transitions, the deadline decision, matching keys, amounts, portfolio."""

from __future__ import annotations

from datetime import date

import pytest

from projects.consortium import domain as cdomain
from projects.cordis import parser
from projects.deadlines import domain as deadlines_domain
from projects.portfolio import domain as portfolio_domain
from projects.project import domain as project_domain
from projects.vocabulary import DeliverableStatus, DomainRuleError, ProjectStatus
from projects.workplan import domain as workplan_domain


@pytest.mark.parametrize(
    ("start", "month", "due"),
    [
        (date(2025, 1, 1), 1, date(2025, 1, 31)),  # the usual start on the 1st: start + N months − 1 day
        (date(2025, 1, 1), 6, date(2025, 6, 30)),
        (date(2025, 1, 1), 12, date(2025, 12, 31)),
        (date(2025, 1, 1), 13, date(2026, 1, 31)),  # crosses the year
        (date(2024, 1, 31), 1, date(2024, 1, 31)),  # M1 is the start month whatever the day
        (date(2024, 1, 31), 2, date(2024, 2, 29)),  # 31 Jan start, leap February
        (date(2023, 1, 31), 2, date(2023, 2, 28)),  # 31 Jan start, common February
        (date(2024, 1, 31), 4, date(2024, 4, 30)),  # a 30-day month
        (date(2024, 2, 29), 1, date(2024, 2, 29)),  # leap-day start
        (date(2024, 2, 29), 12, date(2025, 1, 31)),
        (date(2024, 2, 29), 13, date(2025, 2, 28)),  # next February has no 29th
        (date(2024, 2, 29), 49, date(2028, 2, 29)),  # four years on: leap again
        (date(2024, 12, 15), 2, date(2025, 1, 31)),
    ],
)
def test_due_date_is_the_last_day_of_project_month(start: date, month: int, due: date) -> None:
    assert workplan_domain.month_end(start, month) == due


def test_month_start_follows_the_previous_month_end() -> None:
    assert workplan_domain.month_start(date(2024, 1, 31), 1) == date(2024, 1, 31)
    assert workplan_domain.month_start(date(2024, 1, 31), 2) == date(2024, 2, 1)
    assert workplan_domain.month_start(date(2025, 1, 1), 19) == date(2026, 7, 1)


def test_month_zero_is_refused_and_months_past_the_end_too() -> None:
    with pytest.raises(DomainRuleError):
        workplan_domain.month_end(date(2025, 1, 1), 0)
    assert workplan_domain.duration_months(date(2025, 1, 1), date(2027, 12, 31)) == 36
    workplan_domain.check_month_in_project(36, date(2025, 1, 1), date(2027, 12, 31), "due_month")
    with pytest.raises(DomainRuleError, match="after the project's last month M36"):
        workplan_domain.check_month_in_project(37, date(2025, 1, 1), date(2027, 12, 31), "due_month")


def test_deliverable_lifecycle() -> None:
    workplan_domain.check_deliverable_transition(DeliverableStatus.PLANNED, DeliverableStatus.SUBMITTED)
    workplan_domain.check_deliverable_transition(DeliverableStatus.PLANNED, DeliverableStatus.LATE)
    workplan_domain.check_deliverable_transition(DeliverableStatus.LATE, DeliverableStatus.SUBMITTED)
    workplan_domain.check_deliverable_transition(DeliverableStatus.SUBMITTED, DeliverableStatus.ACCEPTED)
    for old, new in [
        (DeliverableStatus.PLANNED, DeliverableStatus.ACCEPTED),
        (DeliverableStatus.ACCEPTED, DeliverableStatus.SUBMITTED),
        (DeliverableStatus.SUBMITTED, DeliverableStatus.SUBMITTED),
    ]:
        with pytest.raises(DomainRuleError):
            workplan_domain.check_deliverable_transition(old, new)


def test_closed_and_terminated_projects_are_final() -> None:
    project_domain.check_project_transition(ProjectStatus.PLANNED, ProjectStatus.SIGNED)
    project_domain.check_project_transition(ProjectStatus.SIGNED, ProjectStatus.CLOSED)
    with pytest.raises(DomainRuleError):
        project_domain.check_project_transition(ProjectStatus.CLOSED, ProjectStatus.SIGNED)
    with pytest.raises(DomainRuleError):
        project_domain.check_project_transition(ProjectStatus.TERMINATED, ProjectStatus.ONGOING)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2025, 5, 1), None),  # 60 days out: nothing yet
        (date(2025, 6, 1), ("due_soon_30", 30, 30)),  # exactly 30 days before
        (date(2025, 6, 20), ("due_soon_30", 30, 11)),
        (date(2025, 6, 24), ("due_soon_7", 7, 7)),  # the tightest horizon reached, not both
        (date(2025, 7, 1), ("due_soon_7", 7, 0)),  # due today: not overdue yet
        (date(2025, 7, 2), ("overdue", None, 1)),
    ],
)
def test_deadline_notice_for_a_deliverable_due_on_1_july(
    today: date, expected: tuple[str, int | None, int] | None
) -> None:
    notice = deadlines_domain.deadline_notice(date(2025, 7, 1), DeliverableStatus.PLANNED, today, [30, 7])
    got = None if notice is None else (notice.threshold, notice.horizon_days, notice.days)
    assert got == expected


def test_submitted_deliverables_get_no_notice() -> None:
    for status in (DeliverableStatus.SUBMITTED, DeliverableStatus.ACCEPTED):
        assert deadlines_domain.deadline_notice(date(2025, 7, 1), status, date(2025, 8, 1), [30, 7]) is None
    late = deadlines_domain.deadline_notice(date(2025, 7, 1), DeliverableStatus.LATE, date(2025, 8, 1), [30, 7])
    assert late is not None and late.kind == "overdue" and late.days == 31


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Fondazione Toscana Life Sciences", "FONDAZIONE TOSCANA LIFE SCIENCES"),
        ("Università di Pisa", "UNIVERSITA DI PISA"),
        ("Università degli Studi di Firenze", "Universita' degli studi di Firenze"),
        ("Biotech Tuscany S.r.l.", "BIOTECH TUSCANY SRL"),
        ("Biotech Tuscany S. r. l.", "Biotech Tuscany"),
        ("Pharma Siena S.p.A.", "pharma siena spa"),
        ("Zellbau GmbH", "Zellbau"),
        ("Acme Ltd.", "ACME LIMITED"),
        ("Menarini-Ricerche  S.p.A", "Menarini Ricerche"),
    ],
)
def test_names_that_match_after_normalisation(a: str, b: str) -> None:
    assert cdomain.normalise_name(a) == cdomain.normalise_name(b)


def test_names_that_stay_apart() -> None:
    assert cdomain.normalise_name("Università di Pisa") != cdomain.normalise_name("Università di Siena")
    assert cdomain.normalise_name("SpA") == "spa"  # a name that is only a legal form keeps it


def test_vat_numbers_match_with_or_without_country_prefix() -> None:
    assert cdomain.normalise_vat("IT 01234567890") == cdomain.normalise_vat("01234567890") == "01234567890"
    assert cdomain.normalise_vat("it-01.234.567.890") == "01234567890"
    assert cdomain.normalise_vat("NL801234567B01") == "NL801234567B01"
    assert cdomain.normalise_vat("") is None and cdomain.normalise_vat(None) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3499076,25", 3499076.25),
        ("3499076.25", 3499076.25),
        ("3.499.076,25", 3499076.25),
        ("3,499,076.25", 3499076.25),
        ("0", 0.0),
        ("  ", None),
        ("", None),
    ],
)
def test_amounts(text: str, value: float | None) -> None:
    assert parser.parse_amount(text) == value


@pytest.mark.parametrize("text", ["abc", "1.499.999,9x", "12-3"])
def test_bad_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parser.parse_amount(text)


def test_portfolio_groups_and_the_foundation_share() -> None:
    def p(**kw: object) -> portfolio_domain.PortfolioProject:
        base: dict[str, object] = {
            "status": "SIGNED",
            "framework_programme": "HORIZON",
            "funding_scheme": "HORIZON-RIA",
            "thematic_areas": ["oncology"],
            "total_cost": 100.0,
            "ec_max_contribution": 80.0,
            "foundation_role": "partner",
            "foundation_ec_contribution": 10.0,
        }
        return portfolio_domain.PortfolioProject(**(base | kw))  # type: ignore[arg-type]

    figures = portfolio_domain.portfolio(
        [
            p(),
            p(funding_scheme="HORIZON-CSA", thematic_areas=["oncology", "rare_diseases"], total_cost=None),
            p(
                framework_programme="H2020",
                status="CLOSED",
                thematic_areas=[],
                foundation_role="none",
                foundation_ec_contribution=0.0,
            ),
        ]
    )
    assert figures.overall.projects == 3
    assert figures.overall.total_cost == 200.0  # a lump-sum project (null cost) adds nothing
    assert figures.overall.ec_max_contribution == 240.0
    assert figures.by_programme["HORIZON"].projects == 2 and figures.by_programme["H2020"].projects == 1
    assert figures.by_funding_scheme["HORIZON-CSA"].ec_max_contribution == 80.0
    assert figures.by_thematic_area["oncology"].projects == 2
    assert figures.by_thematic_area["rare_diseases"].projects == 1
    assert figures.by_thematic_area["unassigned"].projects == 1
    assert figures.by_status == {
        "SIGNED": portfolio_domain.Bucket(2, 100.0, 160.0),
        "CLOSED": portfolio_domain.Bucket(1, 100.0, 80.0),
    }
    assert figures.foundation_projects == 2
    assert figures.foundation_ec_contribution == 20.0
