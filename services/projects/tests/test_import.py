"""CORDIS import through the API: all or nothing, re-import updates, both upload forms."""

from __future__ import annotations

import pytest

from distretto_shared.contracts import projects as contracts

from .conftest import ProjectsService, fixture_text


async def import_pair(svc: ProjectsService, project_file: str, organization_file: str, expect: int = 200) -> dict:
    return dict(
        await svc.post(
            "/imports/cordis",
            {"project_csv": fixture_text(project_file), "organization_csv": fixture_text(organization_file)},
            expect=expect,
        )
    )


async def test_import_then_reimport_updates_without_duplicating(svc: ProjectsService) -> None:
    first = await import_pair(svc, "project.csv", "organization.csv")
    assert (first["projects_created"], first["participants_created"]) == (3, 7)
    projects = await svc.get("/projects")
    assert projects["total"] == 3
    by_acronym = {p["acronym"]: p for p in projects["items"]}
    assert by_acronym["SYNTCELL"]["total_cost"] is None
    assert by_acronym["LEUKTRIAL"]["ec_max_contribution"] == 6999876.5
    # The foundation is recognised in the consortium and its role derived.
    assert by_acronym["LEUKTRIAL"]["foundation_role"] == "partner"
    assert by_acronym["RAREGUIDE"]["foundation_role"] == "third_party"
    assert by_acronym["SYNTCELL"]["foundation_role"] == "none"
    syntcell_consortium = await svc.get(f"/projects/{by_acronym['SYNTCELL']['id']}/participants")
    assert {p["role"] for p in syntcell_consortium["items"]} == {"participant"}  # no coordinator row: fine

    # Same files again: nothing new, nothing changed, no new events.
    events_before = len(await svc.outbox_types())
    again = await import_pair(svc, "project.csv", "organization.csv")
    assert (again["projects_created"], again["projects_updated"], again["projects_unchanged"]) == (0, 0, 3)
    assert (again["participants_created"], again["participants_updated"]) == (0, 0)
    assert len(await svc.outbox_types()) == events_before

    # A later release (other columns, changed values) updates in place.
    snapshot = await svc.snapshot()
    release2 = await import_pair(svc, "project_release2.csv", "organization_release2.csv")
    assert (release2["projects_created"], release2["projects_updated"]) == (0, 2)
    assert release2["participants_updated"] == 1
    after = await svc.snapshot()
    assert after["project"] == snapshot["project"] == 3
    assert after["participant"] == snapshot["participant"] == 7
    leuk = (await svc.get("/projects", q="leuktrial"))["items"][0]
    assert leuk["title"].startswith("Pragmatic clinical trials")
    assert leuk["ec_signature_date"] == "2023-11-20"  # column absent from release 2: kept
    syntcell = (await svc.get("/projects", q="syntcell"))["items"][0]
    assert syntcell["status"] == "terminated"
    tls = (await svc.get(f"/projects/{leuk['id']}/participants", country="IT"))["items"]
    assert {p["name"]: p["ec_contribution"] for p in tls}["FONDAZIONE TOSCANA LIFE SCIENCES"] == 450000
    types = await svc.outbox_types()
    assert types.count(contracts.ProjectStatusChanged.event_type) == 1
    assert types.count(contracts.ProjectRegistered.event_type) == 3

    portfolio = await svc.get("/portfolio")
    assert portfolio["overall"]["projects"] == 3
    assert portfolio["by_funding_scheme"]["HORIZON-EIC"]["ec_max_contribution"] == 3499076.25
    assert portfolio["foundation_ec_contribution"] == 450000
    assert portfolio["foundation_projects"] == 2


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_multipart_upload_is_accepted(svc: ProjectsService) -> None:
    files = {
        "project": ("project.csv", fixture_text("project.csv").encode(), "text/csv"),
        "organization": ("organization.csv", fixture_text("organization.csv").encode(), "text/csv"),
    }
    response = await svc.http.post("/imports/cordis", files=files)
    assert response.status_code == 200, response.text
    assert response.json()["projects_created"] == 3
    assert (await svc.get("/projects"))["total"] == 3


BROKEN = [
    ("project_bad_date.csv", "organization.csv", "project.csv line 4: startDate '2023-13-01' is not a date"),
    ("project_bad_amount.csv", "organization.csv", "project.csv line 5: ecMaxContribution"),
    ("project_stray_semicolon.csv", "organization.csv", "project.csv line 4: has 21 fields"),
    ("project_missing_column.csv", "organization.csv", "project.csv line 1: missing column(s) acronym"),
    ("project.csv", "organization_bad_role.csv", "organization.csv line 6: role 'beneficiary'"),
    ("project.csv", "organization_unknown_project.csv", "organization.csv line 9: projectID 101199999 is neither"),
]


async def test_a_bad_row_rejects_the_whole_import_and_names_its_line(svc: ProjectsService) -> None:
    before = await svc.snapshot()
    for project_file, organization_file, message in BROKEN:
        body = await import_pair(svc, project_file, organization_file, expect=422)
        assert message in body["message"], (project_file, organization_file, body)
        assert "nothing was imported" in body["message"]
        assert body["details"] and body["details"][0]["line"] >= 1
        assert await svc.snapshot() == before, f"{project_file}/{organization_file} wrote something"
    # Not CSV at all, not JSON, wrong content type, empty: clear 4xx too.
    for content, ctype in [
        (b"{not json", "application/json"),
        (b"id;acronym", "text/plain"),
        (b"{}", "application/json"),
    ]:
        response = await svc.http.post("/imports/cordis", content=content, headers={"content-type": ctype})
        assert response.status_code == 422 and response.json()["message"], response.text
    response = await svc.http.post("/imports/cordis", files={"organization": ("o.csv", b"x", "text/csv")})
    assert response.status_code == 422 and "project" in response.json()["message"]
    assert await svc.snapshot() == before


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_import_adopts_a_project_entered_by_hand_and_takes_cordis_status_as_given(svc: ProjectsService) -> None:
    manual = await svc.project(
        acronym="RareGuide", status="planned", thematic_areas=["rare_diseases"], foundation_role="supporter"
    )
    result = await import_pair(svc, "project.csv", "organization.csv")
    assert (result["projects_created"], result["projects_updated"]) == (2, 1)
    adopted = await svc.get(f"/projects/{manual['id']}")
    assert adopted["cordis_id"] == "101190003"
    assert adopted["status"] == "closed"  # planned → closed is not a hand transition, but CORDIS says so
    assert adopted["acronym"] == "RAREGUIDE" and adopted["thematic_areas"] == ["rare_diseases"]
    assert adopted["foundation_role"] == "supporter"  # the foundation's own field is left alone
    assert (await svc.get("/projects"))["total"] == 3


async def test_formula_cells_in_a_cordis_export_are_flagged_with_file_line_and_column(svc: ProjectsService) -> None:
    project_csv = fixture_text("project.csv").replace('"LEUKTRIAL"', '"=HYPERLINK(""http://x"")"', 1)
    organization_csv = fixture_text("organization.csv").replace('"Utrecht"', '"@SUM(A1)"', 1)
    result = await svc.post(
        "/imports/cordis",
        {
            "project_csv": project_csv,
            "organization_csv": organization_csv.replace("LEUKTRIAL", '=HYPERLINK(""http://x"")'),
        },
        expect=200,
    )
    flagged = {(w["file"], w["line"], w["column"]) for w in result["warnings"]}
    assert ("project.csv", 2, "acronym") in flagged
    assert ("organization.csv", 2, "city") in flagged
    clean = await import_pair(svc, "project_release2.csv", "organization_release2.csv")
    assert clean["warnings"] == []
