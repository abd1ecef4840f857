"""EU projects: the list, a project's page (consortium, work plan, timeline by project month), CORDIS import,
deliverables submitted and accepted, portfolio charts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from console import client, domain
from console.pages._common import items, panel
from console.web import StaffDep, User, UserDep, gateway_of, locale_of, page_router, redirect, render

router = page_router()
STATUSES = ["signed", "closed", "terminated", "planned", "ongoing"]
FILTERS = ("q", "status", "framework_programme", "thematic_area")
PAGE_SIZE = 25


@router.get("/projects")
async def index(request: Request, user: UserDep, offset: int = 0) -> Response:
    q = request.query_params
    filters = {k: q[k][:100] for k in FILTERS if q.get(k)}
    gateway = gateway_of(request)
    page, portfolio = await asyncio.gather(
        gateway.get("/api/projects/projects", user.token, params={**filters, "limit": PAGE_SIZE, "offset": offset}),
        panel(gateway.get("/api/projects/portfolio", user.token)),
    )
    charts: dict[str, str] = {}
    if portfolio.ok:
        _ = locale_of(request).gettext
        for key in ("by_programme", "by_thematic_area"):
            buckets = portfolio.data.get(key) or {}
            charts[key] = json.dumps(
                {
                    "labels": list(buckets),
                    "datasets": [
                        {
                            "label": _("EC contribution (EUR)"),
                            "data": [b["ec_max_contribution"] for b in buckets.values()],
                            "backgroundColor": "#1f5f8b",
                        }
                    ],
                }
            )
    return render(
        request,
        "projects/list.html",
        {
            "rows": items(page),
            "total": page["total"],
            "pager": domain.pages(page["total"], PAGE_SIZE, offset),
            "filters": filters,
            "portfolio": portfolio,
            "charts": charts,
        },
    )


@router.get("/projects/import")
async def import_form(request: Request, user: StaffDep) -> Response:
    return render(request, "projects/import.html", {})


@router.post("/projects/import")
async def import_cordis(request: Request, user: StaffDep) -> Response:
    form = await request.form()
    texts: dict[str, str] = {}
    for field, key in (("project", "project_csv"), ("organization", "organization_csv")):
        upload = form.get(field)
        if upload is not None and hasattr(upload, "read"):
            raw = await upload.read()
            try:
                texts[key] = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                return render(request, "projects/import.html", {"general": f"{field}: not UTF-8 text"}, status=422)
    if not texts.get("project_csv"):
        _ = locale_of(request).gettext
        return render(request, "projects/import.html", {"general": _("Choose the project.csv file.")}, status=422)
    try:
        result = await gateway_of(request).post("/api/projects/imports/cordis", user.token, json=texts)
    except client.Invalid as exc:
        return render(request, "projects/import.html", {"general": exc.message}, status=422)
    ids = result.get("project_ids") or []
    if len(ids) == 1:
        return redirect(request, f"/projects/{ids[0]}?imported=1")
    return render(request, "projects/import.html", {"result": result})


async def _project_context(request: Request, project_id: str, user: User) -> dict[str, Any]:
    gateway = gateway_of(request)
    base = f"/api/projects/projects/{project_id}"
    names = ("participants", "work_packages", "deliverables", "milestones", "periods")
    paths = ("/participants", "/work-packages", "/deliverables", "/milestones", "/reporting-periods")
    # the project and its five panels in one round of concurrent calls, not the project first and then the rest
    project, *results = await asyncio.gather(
        gateway.get(base, user.token), *(panel(gateway.get(base + p, user.token, params={"limit": 500})) for p in paths)
    )
    panels = dict(zip(names, results, strict=True))
    duration = _duration_months(project)
    timeline = []
    for kind in ("deliverables", "milestones"):
        if panels[kind].ok:
            for row in items(panels[kind].data):
                timeline.append(
                    {
                        "kind": kind[:-1],
                        "number": row["number"],
                        "title": row["title"],
                        "month": row["due_month"],
                        "due_date": row.get("due_date"),
                        "status": row["status"],
                        "left": domain.project_month_bar(row["due_month"], duration),
                    }
                )
    timeline.sort(key=lambda t: (t["month"], t["number"]))
    return {
        "project": project,
        "panels": panels,
        "duration": duration,
        "timeline": timeline,
        "ticks": [m for m in range(1, duration + 1) if m == 1 or m % 6 == 0] if duration else [],
        "section": None,
        "errors": {},
        "general": "",
        "values": {},
        "imported": request.query_params.get("imported"),
    }


def _duration_months(project: dict[str, Any]) -> int:
    start, end = project.get("start_date"), project.get("end_date")
    if not start or not end:
        return 0
    y1, m1 = int(start[:4]), int(start[5:7])
    y2, m2 = int(end[:4]), int(end[5:7])
    return max(1, (y2 - y1) * 12 + (m2 - m1) + 1)


@router.get("/projects/{project_id}")
async def project_page(request: Request, project_id: str, user: UserDep) -> Response:
    return render(request, "projects/project.html", await _project_context(request, project_id, user))


async def _again(request: Request, project_id: str, user: User, section: str, exc: client.GatewayError) -> Response:
    context = await _project_context(request, project_id, user)
    errors, general = domain.field_errors(exc.body)
    form = await request.form()
    context.update(section=section, errors=errors, general=general, values=dict(form))
    return render(request, "projects/project.html", context, status=422)


@router.post("/projects/{project_id}/deliverables")
async def add_deliverable(request: Request, project_id: str, user: StaffDep) -> Response:
    return await _add_item(request, project_id, user, "deliverables")


@router.post("/projects/{project_id}/milestones")
async def add_milestone(request: Request, project_id: str, user: StaffDep) -> Response:
    return await _add_item(request, project_id, user, "milestones")


async def _add_item(request: Request, project_id: str, user: User, kind: str) -> Response:
    form = await request.form()
    body: dict[str, Any] = {"number": str(form.get("number", "")).strip(), "title": str(form.get("title", "")).strip()}
    for name in ("due_month", "work_package"):
        raw = str(form.get(name, "")).strip()
        if raw:
            body[name] = int(raw) if raw.isdigit() else raw
    try:
        await gateway_of(request).post(f"/api/projects/projects/{project_id}/{kind}", user.token, json=body)
    except client.Invalid as exc:
        return await _again(request, project_id, user, kind, exc)
    return redirect(request, f"/projects/{project_id}#timeline")


@router.post("/projects/{project_id}/deliverables/{deliverable_id}/{step}")
async def deliverable_step(
    request: Request, project_id: str, deliverable_id: str, step: str, user: StaffDep
) -> Response:
    if step not in ("submit", "accept"):
        raise client.NotFound(404, {"message": step})
    path = f"/api/projects/projects/{project_id}/deliverables/{deliverable_id}/{step}"
    try:
        await gateway_of(request).post(path, user.token, json={})
    except client.Invalid as exc:
        return await _again(request, project_id, user, "deliverables", exc)
    return redirect(request, f"/projects/{project_id}#deliverables")
