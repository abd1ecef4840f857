"""Every route of projects × every role × own/other consortium (docs/service-guide.md, "Authorisation")."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from distretto_dev.authz_matrix import MEMBERS, OWN, SIGNED_IN, STAFF, Case, assert_covered, check, ok, principals
from distretto_dev.testing import DatabaseTarget, identity_headers, service_client
from distretto_shared.contracts.membership import OrganisationProfile
from projects.app import create_app
from projects.consortium import service

from .conftest import make_settings

ORG_A, ORG_B = "org-matrix-a", "org-matrix-b"
FRESH_KEY = {
    "participants": "participant_id",
    "work-packages": "wp_id",
    "deliverables": "deliverable_id",
    "milestones": "milestone_id",
    "reporting-periods": "period_id",
}
_n = itertools.count(100)
_small = itertools.count(2)
_period = itertools.count(0)
_period_number = itertools.count(2)


async def _project(client: httpx.AsyncClient, tag: str) -> dict[str, Any]:
    """A project whose consortium holds the member organisation ``tag``, with a marked work plan."""
    body = {"acronym": f"P{tag}", "title": f"Project {tag}", "status": "SIGNED", "start_date": "2025-01-01"}
    body["end_date"] = "2027-12-31"
    project = await ok(await client.post("/projects", json=body), 201)
    base = f"/projects/{project['id']}"
    part = await ok(await client.post(f"{base}/participants", json={"name": f"Matrix {tag} Srl", "country": "IT"}), 201)
    assert part["organisation_id"] == {"A": ORG_A, "B": ORG_B}[tag], part
    wp = await ok(
        await client.post(
            f"{base}/work-packages", json={"number": 1, "title": f"wp-secret-{tag}", "start_month": 1, "end_month": 12}
        ),
        201,
    )
    deliverable = await ok(
        await client.post(
            f"{base}/deliverables", json={"number": "D1.1", "title": f"deliv-secret-{tag}", "due_month": 6}
        ),
        201,
    )
    milestone = await ok(
        await client.post(f"{base}/milestones", json={"number": "MS1", "title": f"ms-secret-{tag}", "due_month": 3}),
        201,
    )
    period = await ok(
        await client.post(f"{base}/reporting-periods", json={"number": 1, "start_month": 1, "end_month": 12}), 201
    )
    return {
        "project_id": project["id"],
        "participant_id": part["id"],
        "wp_id": wp["id"],
        "deliverable_id": deliverable["id"],
        "milestone_id": milestone["id"],
        "period_id": period["id"],
    }


async def test_every_route_every_role_own_and_other_consortium(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    global _small, _period, _period_number
    _small, _period, _period_number = itertools.count(2), itertools.count(0), itertools.count(2)  # per database
    app = create_app(make_settings(database, kafka_bootstrap))
    assert_covered(app, CASES)
    async with service_client(app) as client:
        ctx = app.state.ctx.context()
        for oid, name in ((ORG_A, "Matrix A Srl"), (ORG_B, "Matrix B Srl")):
            async with ctx.db.transaction() as session:
                profile = OrganisationProfile(organisation_id=oid, name=name, kind="company", status="active")
                await service.record_organisation(session, profile)
        a = await _project(client, "A")
        await _project(client, "B")
        base = f"/projects/{a['project_id']}"

        async def fresh(kind: str, body: dict[str, Any]) -> dict[str, Any]:
            created = await ok(await client.post(f"{base}/{kind}", json=body), 201)
            return {FRESH_KEY[kind]: created["id"]}

        def n() -> int:
            return next(_n)

        fresh_for = {
            "/projects/{project_id}/participants/{participant_id}": lambda: fresh(
                "participants", {"name": f"Lab {n()}", "country": "IT"}
            ),
            "/projects/{project_id}/work-packages/{wp_id}": lambda: fresh(
                "work-packages", {"number": next(_small), "title": "Spare", "start_month": 1, "end_month": 12}
            ),
            "/projects/{project_id}/deliverables/{deliverable_id}": lambda: fresh(
                "deliverables", {"number": f"D9.{n()}", "title": "Spare", "due_month": 6}
            ),
            "/projects/{project_id}/milestones/{milestone_id}": lambda: fresh(
                "milestones", {"number": f"MS{n()}", "title": "Spare", "due_month": 3}
            ),
            "/projects/{project_id}/reporting-periods/{period_id}": lambda: fresh("reporting-periods", _spare_period()),
        }
        for case in CASES:
            if case.method == "DELETE":
                case.fresh = fresh_for[case.path]

        await check(
            client,
            "projects",
            CASES,
            a,
            {
                "A": ["wp-secret-A", "deliv-secret-A", "ms-secret-A"],
                "B": ["wp-secret-B", "deliv-secret-B", "ms-secret-B"],
            },
            org_a=ORG_A,
            org_b=ORG_B,
        )

        # The list of every project's deliverables answers a member with its own consortia's only.
        me = principals(ORG_A, ORG_B)["member_a"]
        mine = await ok(await client.get("/deliverables", headers=identity_headers(me, "projects")))
        assert mine["items"] and {d["project_id"] for d in mine["items"]} == {a["project_id"]}


def _spare_period() -> dict[str, Any]:
    k = next(_period)
    return {"number": 10 + k, "start_month": 25 + 2 * k, "end_month": 26 + 2 * k}


def _n_body(**fields: Any) -> Any:
    return lambda _: {k: (v() if callable(v) else v) for k, v in fields.items()}


CASES: list[Case] = [
    Case("GET", "/projects", SIGNED_IN),
    Case("GET", "/projects/{project_id}", SIGNED_IN),
    Case("GET", "/projects/{project_id}/participants", SIGNED_IN),
    Case("GET", "/projects/{project_id}/participants/{participant_id}", SIGNED_IN),
    Case("GET", "/organisations", SIGNED_IN),
    Case("GET", "/portfolio", SIGNED_IN),
    Case("GET", "/projects/{project_id}/work-packages", OWN),
    Case("GET", "/projects/{project_id}/work-packages/{wp_id}", OWN),
    Case("GET", "/projects/{project_id}/deliverables", OWN),
    Case("GET", "/projects/{project_id}/deliverables/{deliverable_id}", OWN),
    Case("GET", "/projects/{project_id}/milestones", OWN),
    Case("GET", "/projects/{project_id}/milestones/{milestone_id}", OWN),
    Case("GET", "/projects/{project_id}/reporting-periods", OWN),
    Case("GET", "/deliverables", MEMBERS),
    Case("POST", "/projects", STAFF, body=_n_body(acronym=lambda: f"NEW{next(_n)}", title="New")),
    Case("PATCH", "/projects/{project_id}", STAFF, body={"title": "Renamed by the matrix"}),
    Case("POST", "/projects/{project_id}/participants", STAFF, body=_n_body(name=lambda: f"Lab {next(_n)}")),
    Case("PATCH", "/projects/{project_id}/participants/{participant_id}", STAFF, body={"city": "Siena"}),
    Case("DELETE", "/projects/{project_id}/participants/{participant_id}", STAFF),
    Case(
        "POST",
        "/projects/{project_id}/work-packages",
        STAFF,
        body=_n_body(number=lambda: next(_small), title="WP", start_month=1, end_month=12),
    ),
    Case("PATCH", "/projects/{project_id}/work-packages/{wp_id}", STAFF, body={"person_months": 3}),
    Case("DELETE", "/projects/{project_id}/work-packages/{wp_id}", STAFF),
    Case(
        "POST",
        "/projects/{project_id}/deliverables",
        STAFF,
        body=_n_body(number=lambda: f"D8.{next(_n)}", title="D", due_month=6),
    ),
    Case("PATCH", "/projects/{project_id}/deliverables/{deliverable_id}", STAFF, body={"title": "deliv-secret-A 2"}),
    Case("POST", "/projects/{project_id}/deliverables/{deliverable_id}/submit", STAFF, body={}),
    Case("POST", "/projects/{project_id}/deliverables/{deliverable_id}/accept", STAFF, body={}),
    Case("DELETE", "/projects/{project_id}/deliverables/{deliverable_id}", STAFF),
    Case(
        "POST",
        "/projects/{project_id}/milestones",
        STAFF,
        body=_n_body(number=lambda: f"MS{next(_n)}", title="M", due_month=3),
    ),
    Case("PATCH", "/projects/{project_id}/milestones/{milestone_id}", STAFF, body={"title": "ms-secret-A 2"}),
    Case("POST", "/projects/{project_id}/milestones/{milestone_id}/reach", STAFF, body={}),
    Case("DELETE", "/projects/{project_id}/milestones/{milestone_id}", STAFF),
    Case(
        "POST",
        "/projects/{project_id}/reporting-periods",
        STAFF,
        body=_n_body(number=lambda: next(_period_number), start_month=13, end_month=24),
    ),
    Case("PATCH", "/projects/{project_id}/reporting-periods/{period_id}", STAFF, body={"end_month": 11}),
    Case("DELETE", "/projects/{project_id}/reporting-periods/{period_id}", STAFF),
    Case("POST", "/imports/cordis", STAFF, body={"project_csv": "", "organization_csv": ""}),
    Case("POST", "/deadlines/scan", STAFF, body={}),
]
