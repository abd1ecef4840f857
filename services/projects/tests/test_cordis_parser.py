"""The CORDIS parser on the fixture files (no database)."""

from __future__ import annotations

from datetime import date

import pytest

from projects.cordis import parser as cordis

from .conftest import fixture_text


def test_clean_export_is_read_with_every_gotcha_handled() -> None:
    export = cordis.parse_export(fixture_text("project.csv"), fixture_text("organization.csv"))
    assert export.errors == []
    by_id = {p.project.cordis_id: p.project for p in export.projects}
    assert sorted(by_id) == ["101190001", "101190002", "101190003"]
    leuk = by_id["101190001"]
    assert leuk.total_cost == 6999876.5  # comma decimal
    assert leuk.start_date == date(2024, 1, 1)
    assert leuk.topics == ["HORIZON-MISS-2023-CANCER-01-03"]
    assert leuk.keywords == ["leukaemia", "pragmatic trials", "refractory cancer"]
    assert "semicolon inside the quotes" in leuk.objective and "\n" in leuk.objective
    syntcell = by_id["101190002"]
    assert syntcell.total_cost is None  # 0 = not declared (lump sum)
    assert syntcell.ec_max_contribution == 3499076.25
    assert syntcell.funding_scheme == "HORIZON-EIC"
    assert by_id["101190003"].status == "closed"
    # SYNTCELL has no coordinator row: accepted as it is.
    roles = {(p.cordis_project_id, p.participant.role) for p in export.participants}
    assert ("101190002", "coordinator") not in roles
    unipi = next(p for p in export.participants if p.participant.short_name == "UNIPI")
    assert unipi.participant.ec_contribution == 650000.75 and unipi.participant.country == "IT"
    firenze = next(p for p in export.participants if p.participant.short_name == "UNIFI")
    assert firenze.participant.total_cost is None


def test_a_later_release_with_other_columns_maps_by_header_name() -> None:
    export = cordis.parse_export(fixture_text("project_release2.csv"), fixture_text("organization_release2.csv"))
    assert export.errors == []
    leuk = next(p for p in export.projects if p.project.cordis_id == "101190001")
    assert leuk.project.title.startswith("Pragmatic clinical trials")
    assert "ec_signature_date" not in leuk.columns  # absent columns are not "empty": they are left alone
    assert len(export.participants) == 7


@pytest.mark.parametrize(
    ("project_file", "organization_file", "file", "line", "reason"),
    [
        ("project_bad_date.csv", "organization.csv", "project.csv", 4, "startDate '2023-13-01' is not a date"),
        ("project_bad_amount.csv", "organization.csv", "project.csv", 5, "ecMaxContribution '1.499.999,9x'"),
        ("project_stray_semicolon.csv", "organization.csv", "project.csv", 4, "has 21 fields but the header has 20"),
        ("project_missing_column.csv", "organization.csv", "project.csv", 1, "missing column(s) acronym"),
        ("project.csv", "organization_bad_role.csv", "organization.csv", 6, "role 'beneficiary'"),
    ],
)
def test_bad_rows_are_reported_with_file_line_and_reason(
    project_file: str, organization_file: str, file: str, line: int, reason: str
) -> None:
    export = cordis.parse_export(fixture_text(project_file), fixture_text(organization_file))
    assert len(export.errors) == 1, export.errors
    error = export.errors[0]
    assert (error.file, error.line) == (file, line)
    assert reason in error.reason
