"""The demo loader (idempotent, through the API) and the CORDIS import command line."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from projects import cordis_import, demo

from .conftest import FIXTURES, ProjectsService


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_demo_loads_the_five_projects_once_and_feeds_the_deadline_engine(svc: ProjectsService) -> None:
    today = date(2025, 6, 15)
    first = await demo.load(svc.http, today=today)
    assert first["projects"] == 5 and first["participants"] >= 25 and first["deliverables"] >= 30
    snapshot = await svc.snapshot()
    second = await demo.load(svc.http, today=today)
    assert set(second.values()) == {0}
    assert await svc.snapshot() == snapshot

    projects = {p["acronym"]: p for p in (await svc.get("/projects"))["items"]}
    assert sorted(projects) == sorted(["ArTCell", "BORNTOGEtTHERe", "EP PerMed", "Impact-AML", "MammoScreen"])
    permed = projects["EP PerMed"]
    assert (permed["total_cost"], permed["funding_scheme"]) == (335_000_000.0, "HORIZON-COFUND")
    assert "24" in permed["objective"] and "50" in permed["objective"]
    mammo = projects["MammoScreen"]
    assert mammo["total_cost"] == 7_000_000.0
    assert (mammo["start_date"], mammo["end_date"]) == ("2023-10-01", "2027-09-30")  # four years
    assert projects["ArTCell"]["funding_scheme"] == "HORIZON-EIC"
    assert all("demo" in p["keywords"] and "Demo data" in p["notes"] for p in projects.values())

    scan = await svc.call("POST", "/deadlines/scan", params={"today": today.isoformat()})
    # Each project's D3.1 is due this month and D3.2 was due last month; Impact-AML's D2.1 (M18) is due too.
    assert (scan["due_soon"], scan["overdue"]) == (6, 5)
    portfolio = await svc.get("/portfolio")
    assert portfolio["foundation_projects"] == 5
    assert portfolio["foundation_ec_contribution"] == 2_440_000.0


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_import_command_line_posts_both_files_and_reports_bad_rows(svc: ProjectsService) -> None:
    status, answer = await cordis_import.run(
        svc.http, *cordis_import.read_files(FIXTURES / "project.csv", FIXTURES / "organization.csv")
    )
    assert (status, answer["projects_created"], answer["participants_created"]) == (0, 3, 7)
    status, answer = await cordis_import.run(
        svc.http, *cordis_import.read_files(FIXTURES / "project_bad_date.csv", None)
    )
    assert status == 1 and "project.csv line 4" in answer["message"]
    assert (await svc.get("/projects"))["total"] == 3


def test_import_command_line_needs_a_credential(capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.delenv(cordis_import.TOKEN_VARIABLE, raising=False)
    assert cordis_import.main([str(FIXTURES / "project.csv"), "--base-url", "http://127.0.0.1:9"]) == 2
    assert "needs a credential" in capsys.readouterr().err
    assert cordis_import.token_from(None, {"DISTRETTO_TOKEN": " dk_from_env "}) == "dk_from_env"
    assert cordis_import.token_from("from-option", {"DISTRETTO_TOKEN": "dk_from_env"}) == "from-option"
    assert cordis_import.token_from(None, {"DISTRETTO_TOKEN": "  "}) is None
