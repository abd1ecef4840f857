"""The HTTP API: CRUD, filters, pagination, the work plan, and bad input on every route."""

from __future__ import annotations

from distretto_shared.contracts import projects as contracts

from .conftest import ProjectsService


async def test_projects_crud_filters_and_pagination(svc: ProjectsService) -> None:
    a = await svc.project(acronym="ALPHA", thematic_areas=["oncology", "personalised_medicine"], total_cost=1000)
    await svc.project(acronym="BETA", funding_scheme="HORIZON-CSA", thematic_areas=["rare_diseases"])
    await svc.project(acronym="GAMMA", status="planned", foundation_role="coordinator", thematic_areas=[])
    assert a["status"] == "signed" and a["member_organisation_ids"] == []

    page = await svc.get("/projects", limit=2)
    assert (page["total"], [p["acronym"] for p in page["items"]]) == (3, ["ALPHA", "BETA"])
    assert [p["acronym"] for p in (await svc.get("/projects", limit=2, offset=2))["items"]] == ["GAMMA"]
    assert [p["acronym"] for p in (await svc.get("/projects", funding_scheme="HORIZON-CSA"))["items"]] == ["BETA"]
    assert [p["acronym"] for p in (await svc.get("/projects", thematic_area="oncology"))["items"]] == ["ALPHA"]
    assert [p["acronym"] for p in (await svc.get("/projects", status="planned"))["items"]] == ["GAMMA"]
    assert [p["acronym"] for p in (await svc.get("/projects", foundation_role="coordinator"))["items"]] == ["GAMMA"]
    assert [p["acronym"] for p in (await svc.get("/projects", q="alp"))["items"]] == ["ALPHA"]

    changed = await svc.call("PATCH", f"/projects/{a['id']}", {"title": "Alpha renamed", "total_cost": None})
    assert (changed["title"], changed["total_cost"]) == ("Alpha renamed", None)
    closed = await svc.call("PATCH", f"/projects/{a['id']}", {"status": "CLOSED"})
    assert closed["status"] == "closed"
    refused = await svc.call("PATCH", f"/projects/{a['id']}", {"status": "SIGNED"}, expect=409)
    assert "cannot go from closed to signed" in refused["message"]
    assert (await svc.get(f"/projects/{a['id']}"))["status"] == "closed"
    types = await svc.outbox_types()
    assert types.count(contracts.ProjectRegistered.event_type) == 3
    assert types.count(contracts.ProjectUpdated.event_type) == 2
    assert types.count(contracts.ProjectStatusChanged.event_type) == 1

    portfolio = await svc.get("/portfolio")
    assert portfolio["overall"]["projects"] == 3
    assert portfolio["by_thematic_area"]["personalised_medicine"]["projects"] == 1
    assert portfolio["by_status"] == {
        "closed": {"projects": 1, "total_cost": 0.0, "ec_max_contribution": 0.0},
        "signed": {"projects": 1, "total_cost": 0.0, "ec_max_contribution": 0.0},
        "planned": {"projects": 1, "total_cost": 0.0, "ec_max_contribution": 0.0},
    }


async def test_consortium_and_work_plan(svc: ProjectsService) -> None:
    project = await svc.project(acronym="PLAN", start_date="2024-01-31", end_date="2026-01-31")
    base = f"/projects/{project['id']}"
    coord = await svc.post(f"{base}/participants", {"name": "Ospedale X", "role": "coordinator", "country": "it"})
    tls = await svc.post(
        f"{base}/participants", {"name": "Fondazione Toscana Life Sciences", "country": "IT", "ec_contribution": 250000}
    )
    await svc.post(f"{base}/participants", {"name": "Lab Y", "role": "thirdParty", "country": "FR"})
    assert coord["country"] == "IT" and tls["is_foundation"] is True
    assert (await svc.get(base))["foundation_role"] == "partner"  # derived from its consortium role
    assert [p["name"] for p in (await svc.get(f"{base}/participants", country="FR"))["items"]] == ["Lab Y"]
    assert (await svc.get(f"{base}/participants", role="coordinator"))["total"] == 1
    assert (await svc.get(f"{base}/participants", linked="false", limit=1))["total"] == 3
    renamed = await svc.call("PATCH", f"{base}/participants/{coord['id']}", {"city": "Siena"})
    assert renamed["city"] == "Siena"

    wp1 = await svc.post(
        f"{base}/work-packages",
        {"number": 1, "title": "Management", "lead_participant_id": coord["id"], "start_month": 1, "end_month": 25},
    )
    assert wp1["lead_participant_id"] == coord["id"]
    await svc.call("PATCH", f"{base}/work-packages/{wp1['id']}", {"person_months": 12.5})
    assert (await svc.get(f"{base}/work-packages/{wp1['id']}"))["person_months"] == 12.5

    d = await svc.post(
        f"{base}/deliverables",
        {"number": "D1.1", "title": "DMP", "type": "DMP", "dissemination": "SEN", "work_package": 1, "due_month": 2},
    )
    assert (d["due_date"], d["status"]) == ("2024-02-29", "planned")  # 31 Jan start: M2 ends on leap day
    d2 = await svc.post(f"{base}/deliverables", {"number": "D1.2", "title": "Final report", "due_month": 25})
    assert d2["due_date"] == "2026-01-31"
    submitted = await svc.post(f"{base}/deliverables/{d['id']}/submit", {"submitted_on": "2024-02-27"}, expect=200)
    assert (submitted["status"], submitted["submitted_on"]) == ("submitted", "2024-02-27")
    accepted = await svc.post(f"{base}/deliverables/{d['id']}/accept", {"accepted_on": "2024-04-02"}, expect=200)
    assert accepted["status"] == "accepted"
    assert (await svc.get(f"{base}/deliverables", status="accepted"))["total"] == 1
    assert [x["number"] for x in (await svc.get("/deliverables", due_after="2025-01-01"))["items"]] == ["D1.2"]

    ms = await svc.post(f"{base}/milestones", {"number": "MS1", "title": "Kick-off", "due_month": 1})
    assert ms["due_date"] == "2024-01-31"
    reached = await svc.post(f"{base}/milestones/{ms['id']}/reach", {"reached_on": "2024-01-31"}, expect=200)
    assert reached["status"] == "reached"
    again = await svc.post(f"{base}/milestones/{ms['id']}/reach", {}, expect=409)
    assert "already reached" in again["message"]

    rp1 = await svc.post(f"{base}/reporting-periods", {"number": 1, "start_month": 1, "end_month": 12})
    assert (rp1["start_date"], rp1["end_date"], rp1["report_due_date"]) == ("2024-01-31", "2024-12-31", "2025-03-01")
    await svc.post(f"{base}/reporting-periods", {"number": 2, "start_month": 13, "end_month": 25})
    assert (await svc.get(f"{base}/reporting-periods"))["total"] == 2

    # Moving the project's start moves the whole plan.
    await svc.call("PATCH", base, {"start_date": "2024-03-01", "end_date": "2026-03-31"})
    assert (await svc.get(f"{base}/deliverables/{d2['id']}"))["due_date"] == "2026-03-31"
    assert (await svc.get(f"{base}/milestones/{ms['id']}"))["due_date"] == "2024-03-31"

    await svc.call("DELETE", f"{base}/work-packages/{wp1['id']}", expect=409)  # D1.1 still refers to WP1
    await svc.call("DELETE", f"{base}/deliverables/{d['id']}", expect=204)
    await svc.call("DELETE", f"{base}/work-packages/{wp1['id']}", expect=204)
    await svc.call("DELETE", f"{base}/milestones/{ms['id']}", expect=204)
    await svc.call("DELETE", f"{base}/reporting-periods/{rp1['id']}", expect=204)
    await svc.call("DELETE", f"{base}/participants/{coord['id']}", expect=204)
    assert (await svc.get(f"{base}/participants"))["total"] == 2

    types = await svc.outbox_types()
    assert types.count(contracts.ParticipantAdded.event_type) == 3
    assert types.count(contracts.DeliverableSubmitted.event_type) == 1
    assert types.count(contracts.MilestoneReached.event_type) == 1
    assert (await svc.get("/portfolio"))["foundation_ec_contribution"] == 250000


async def test_bad_input_on_every_route_is_a_clear_4xx_and_writes_nothing(svc: ProjectsService) -> None:
    project = await svc.project(acronym="GUARD", start_date="2025-01-01", end_date="2025-12-31")
    other = await svc.project(acronym="OTHER")
    base = f"/projects/{project['id']}"
    part = await svc.post(f"{base}/participants", {"name": "Lab"})
    wp = await svc.post(f"{base}/work-packages", {"number": 1, "title": "WP", "start_month": 1, "end_month": 12})
    d = await svc.post(f"{base}/deliverables", {"number": "D1.1", "title": "R", "due_month": 3})
    ms = await svc.post(f"{base}/milestones", {"number": "MS1", "title": "M", "due_month": 3})
    rp = await svc.post(f"{base}/reporting-periods", {"number": 1, "start_month": 1, "end_month": 6})
    await svc.post(f"{base}/deliverables/{d['id']}/submit", {"submitted_on": "2025-03-01"}, expect=200)
    before = await svc.snapshot()

    missing = "/projects/nope"
    cases: list[tuple[str, str, object, int]] = [
        ("POST", "/projects", {"acronym": "", "title": "t"}, 422),
        ("POST", "/projects", {"acronym": "A", "title": "t", "status": "RUNNING"}, 422),
        (
            "POST",
            "/projects",
            {"acronym": "A", "title": "t", "start_date": "2025-02-01", "end_date": "2025-01-01"},
            422,
        ),
        ("POST", "/projects", {"acronym": "A", "title": "t", "thematic_areas": ["astrology"]}, 422),
        ("POST", "/projects", {"acronym": "A", "title": "t", "total_cost": -1}, 422),
        ("POST", "/projects", "not an object", 422),
        ("GET", "/projects?limit=0", None, 422),
        ("GET", "/projects?limit=501", None, 422),
        ("GET", "/projects?status=RUNNING", None, 422),
        ("GET", missing, None, 404),
        ("PATCH", missing, {"title": "x"}, 404),
        ("PATCH", base, {"acronym": None}, 422),
        ("PATCH", base, {"end_date": "2024-01-01"}, 422),
        ("PATCH", base, {"foundation_role": "sponsor"}, 422),
        ("PATCH", base, {"end_date": "2025-02-28"}, 422),  # D1.1 (M3) and MS1 would fall after the end
        ("POST", f"{missing}/participants", {"name": "x"}, 404),
        ("POST", f"{base}/participants", {"name": "x", "role": "beneficiary"}, 422),
        ("POST", f"{base}/participants", {"name": "x", "country": "Italy"}, 422),
        ("POST", f"{base}/participants", {"name": "  "}, 422),
        ("GET", f"{base}/participants?role=boss", None, 422),
        ("GET", f"{base}/participants/nope", None, 404),
        ("GET", f"/projects/{other['id']}/participants/{part['id']}", None, 404),  # not its project
        ("PATCH", f"{base}/participants/{part['id']}", {"ec_contribution": -5}, 422),
        ("PATCH", f"{base}/participants/{part['id']}", {"name": None}, 422),
        ("DELETE", f"{base}/participants/nope", None, 404),
        ("POST", f"{base}/work-packages", {"number": 1, "title": "dup", "start_month": 1, "end_month": 2}, 409),
        ("POST", f"{base}/work-packages", {"number": 2, "title": "x", "start_month": 5, "end_month": 2}, 422),
        ("POST", f"{base}/work-packages", {"number": 2, "title": "x", "start_month": 1, "end_month": 13}, 422),
        (
            "POST",
            f"{base}/work-packages",
            {"number": 2, "title": "x", "start_month": 1, "end_month": 2, "lead_participant_id": "nobody"},
            422,
        ),
        ("PATCH", f"{base}/work-packages/{wp['id']}", {"end_month": 40}, 422),
        ("GET", f"{base}/work-packages/nope", None, 404),
        ("DELETE", f"{base}/work-packages/nope", None, 404),
        ("POST", f"{base}/deliverables", {"number": "1.1", "title": "x", "due_month": 2}, 422),
        ("POST", f"{base}/deliverables", {"number": "D1.1", "title": "dup", "due_month": 2}, 409),
        ("POST", f"{base}/deliverables", {"number": "D1.2", "title": "x", "due_month": 0}, 422),
        ("POST", f"{base}/deliverables", {"number": "D1.2", "title": "x", "due_month": 13}, 422),
        ("POST", f"{base}/deliverables", {"number": "D1.2", "title": "x", "due_month": 2, "type": "PDF"}, 422),
        ("POST", f"{base}/deliverables", {"number": "D1.2", "title": "x", "due_month": 2, "dissemination": "CO"}, 422),
        ("POST", f"{base}/deliverables", {"number": "D9.1", "title": "x", "due_month": 2, "work_package": 9}, 422),
        ("GET", f"{base}/deliverables?due_before=yesterday", None, 422),
        ("GET", "/deliverables?status=lost", None, 422),
        ("PATCH", f"{base}/deliverables/{d['id']}", {"due_month": 14}, 422),
        ("PATCH", f"{base}/deliverables/{d['id']}", {"title": None}, 422),
        ("GET", f"{base}/deliverables/nope", None, 404),
        ("DELETE", f"{base}/deliverables/nope", None, 404),
        ("POST", f"{base}/deliverables/{d['id']}/submit", {}, 409),  # already submitted
        ("POST", f"{base}/deliverables/{d['id']}/accept", {"accepted_on": "2025-02-01"}, 422),  # before submission
        ("POST", f"{base}/deliverables/{d['id']}/accept", {"accepted_on": "someday"}, 422),
        ("POST", f"{base}/deliverables/nope/accept", {}, 404),
        ("POST", f"{base}/milestones", {"number": "X1", "title": "x", "due_month": 2}, 422),
        ("POST", f"{base}/milestones", {"number": "MS1", "title": "dup", "due_month": 2}, 409),
        ("POST", f"{base}/milestones", {"number": "MS2", "title": "x", "due_month": 13}, 422),
        ("PATCH", f"{base}/milestones/{ms['id']}", {"due_month": 0}, 422),
        ("GET", f"{base}/milestones/nope", None, 404),
        ("DELETE", f"{base}/milestones/nope", None, 404),
        ("POST", f"{base}/milestones/nope/reach", {}, 404),
        ("POST", f"{base}/milestones/{ms['id']}/reach", {"reached_on": "2025-13-01"}, 422),
        ("POST", f"{base}/reporting-periods", {"number": 1, "start_month": 7, "end_month": 12}, 409),
        ("POST", f"{base}/reporting-periods", {"number": 2, "start_month": 6, "end_month": 12}, 422),  # overlap
        ("POST", f"{base}/reporting-periods", {"number": 2, "start_month": 9, "end_month": 7}, 422),
        ("PATCH", f"{base}/reporting-periods/{rp['id']}", {"end_month": 13}, 422),
        ("DELETE", f"{base}/reporting-periods/nope", None, 404),
        ("GET", f"{missing}/reporting-periods", None, 404),
        ("GET", f"{missing}/milestones", None, 404),
        ("GET", f"{missing}/work-packages", None, 404),
        ("GET", f"{missing}/deliverables", None, 404),
        ("POST", "/deadlines/scan?today=tomorrow", None, 422),
        ("POST", "/deadlines/scan?today=0", None, 422),  # not read as 1970-01-01
        ("GET", f"{base}/deliverables?due_before=1700000000", None, 422),
        # a date in a body is YYYY-MM-DD and a flag is true/false: 0 is neither 1970-01-01 nor false
        ("POST", "/projects", {"acronym": "A", "title": "t", "ec_signature_date": 0}, 422),
        ("PATCH", base, {"start_date": 1700000000}, 422),
        ("POST", f"{base}/deliverables/{d['id']}/submit", {"submitted_on": 0}, 422),
        ("POST", f"{base}/deliverables/{d['id']}/accept", {"accepted_on": 0}, 422),
        ("POST", f"{base}/milestones/{ms['id']}/reach", {"reached_on": 0}, 422),
        ("POST", f"{base}/participants", {"name": "x", "sme": 0}, 422),
        ("PATCH", f"{base}/participants/{part['id']}", {"sme": "yes"}, 422),
        ("GET", "/portfolio?foundation_role=boss", None, 422),
        ("GET", "/organisations?offset=-1", None, 422),
    ]
    for method, path, body, status in cases:
        response = await svc.http.request(method, path, json=body)
        assert response.status_code == status, f"{method} {path} {body}: {response.status_code} {response.text}"
        assert response.json().get("message"), f"{method} {path}: no message in {response.text}"
    # Broken JSON bodies too.
    for path in ("/projects", f"{base}/participants", f"{base}/deliverables"):
        response = await svc.http.post(path, content=b"{oops", headers={"content-type": "application/json"})
        assert response.status_code == 422 and response.json()["message"]
    assert await svc.snapshot() == before


async def test_ids_are_answered_dashed_and_taken_in_either_form(svc: ProjectsService) -> None:
    project = await svc.project(acronym="IDS", start_date="2025-01-01", end_date="2027-12-31")
    dashed = project["id"]
    assert len(dashed) == 36 and dashed.count("-") == 4 and dashed == dashed.lower()
    hex32 = dashed.replace("-", "")
    # Both forms name the same project, for good (ids stored and carried in events stay valid).
    assert (await svc.get(f"/projects/{hex32}"))["id"] == dashed
    assert (await svc.get(f"/projects/{dashed.upper()}"))["id"] == dashed
    lead = await svc.post(f"/projects/{hex32}/participants", {"name": "Lead lab", "country": "IT"})
    assert lead["project_id"] == dashed and len(lead["id"]) == 36
    wp = await svc.post(
        f"/projects/{dashed}/work-packages",
        {"number": 1, "title": "Management", "start_month": 1, "end_month": 36, "lead_participant_id": lead["id"]},
    )
    assert wp["lead_participant_id"] == lead["id"] and wp["project_id"] == dashed
    hex_lead = lead["id"].replace("-", "")
    moved = await svc.call("PATCH", f"/projects/{dashed}/work-packages/{wp['id']}", {"lead_participant_id": hex_lead})
    assert moved["lead_participant_id"] == lead["id"]
    assert (await svc.get(f"/projects/{hex32}/participants/{hex_lead}"))["name"] == "Lead lab"
    # An id in neither form is simply unknown.
    missing = await svc.call("GET", "/projects/not-an-id", expect=404)
    assert missing["error"] == "not_found"


async def test_vocabularies_answer_lower_case_and_take_cordis_spellings(svc: ProjectsService) -> None:
    project = await svc.project(acronym="CASES", status="Signed", start_date="2025-01-01", end_date="2027-12-31")
    assert project["status"] == "signed"
    assert [p["acronym"] for p in (await svc.get("/projects", status="SIGNED"))["items"]] == ["CASES"]
    assert [p["acronym"] for p in (await svc.get("/projects", status="signed"))["items"]] == ["CASES"]
    base = f"/projects/{project['id']}"
    partner = await svc.post(f"{base}/participants", {"name": "Partner lab", "role": "associatedPartner"})
    third = await svc.post(f"{base}/participants", {"name": "Third lab", "role": "THIRD_PARTY"})
    assert (partner["role"], third["role"]) == ("associated_partner", "third_party")
    assert (await svc.get(f"{base}/participants", role="associatedPartner"))["total"] == 1
    d = await svc.post(
        f"{base}/deliverables",
        {"number": "D1.1", "title": "Plan", "type": "DMP", "dissemination": "SEN", "due_month": 6},
    )
    assert (d["type"], d["dissemination"]) == ("dmp", "sen")
    assert (await svc.post(f"{base}/deliverables", {"number": "D1.2", "title": "Site", "due_month": 7}))["type"] == "r"
    bad = await svc.call("PATCH", base, {"status": "SIGNEDX"}, expect=422)
    assert bad["error"] == "validation_error"
    closed = await svc.call("PATCH", base, {"status": "CLOSED"})
    assert closed["status"] == "closed"
    events = [e for e in await svc.outbox() if e["type"] == contracts.ProjectStatusChanged.event_type]
    assert [(e["data"]["old_status"], e["data"]["new_status"]) for e in events] == [("signed", "closed")]
