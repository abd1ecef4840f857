"""Members: the register (search, filters, sort, pages), an organisation's page, forms, lifecycle, CSV in and out."""

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

KINDS = ["company", "university", "research_institute", "hospital", "health_authority", "foundation", "other"]
SECTORS = ["biotech", "pharma", "medical_devices", "diagnostics", "nutraceutics", "cosmeceutics", "ict_life_sciences"]
SIZES = ["micro", "small", "medium", "large"]
STATUSES = ["applied", "active", "suspended", "lapsed", "left", "rejected"]
SORTABLE = ["name", "kind", "status", "province", "size_class", "joined_on"]
FILTERS = ("q", "kind", "sector", "status", "province", "size_class")
PAGE_SIZE = 25
ORG_FIELDS = ("name", "kind", "address", "postcode", "city", "province", "country", "website", "vat_number")
ORG_FIELDS_MORE = ("ateco_code", "description")
ACTIONS = ("approve", "reject", "suspend", "reinstate", "lapse", "renew", "leave")


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    return {k: q[k][:200] for k in FILTERS if q.get(k)}


@router.get("/members")
async def register(request: Request, user: UserDep, sort: str = "name", dir: str = "asc", offset: int = 0) -> Response:
    filters = _filters(request)
    offset = max(0, offset)
    sort = sort if sort in SORTABLE else "name"
    dir = "desc" if dir == "desc" else "asc"
    params = {**filters, "sort": domain.sort_param(sort, dir == "desc", SORTABLE), "limit": PAGE_SIZE, "offset": offset}
    page = await gateway_of(request).get("/api/membership/organisations", user.token, params=params)
    context = {
        "rows": items(page),
        "total": page["total"],
        "pager": domain.pages(page["total"], PAGE_SIZE, offset),
        "filters": filters,
        "sort": sort,
        "dir": dir,
        "kinds": KINDS,
        "sectors": SECTORS,
        "sizes": SIZES,
        "statuses": STATUSES,
        "sortable": SORTABLE,
    }
    template = "members/_table.html" if request.headers.get("hx-target") == "register" else "members/list.html"
    return render(request, template, context)


@router.get("/members/export")
async def export(request: Request, user: StaffDep) -> Response:
    answer = await gateway_of(request).request(
        "GET", "/api/membership/organisations/export", user.token, params=_filters(request)
    )
    client.Gateway.result(answer, "/api/membership/organisations/export")
    return Response(
        answer.content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="members.csv"'},
    )


# -- create, edit --------------------------------------------------------------------------------


def _org_body(form: Any, partial: bool) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in (*ORG_FIELDS, *ORG_FIELDS_MORE):
        value = str(form.get(name, "")).strip()
        if value or not partial:
            if name in ("postcode", "city", "province", "website", "vat_number", "ateco_code") and not value:
                continue
            body[name] = value
    body["sectors"] = [s for s in form.getlist("sectors") if s in SECTORS]
    body["competences"] = domain.split_list(str(form.get("competences", "")))
    body["keywords"] = domain.split_list(str(form.get("keywords", "")))
    if not body.get("country"):
        body["country"] = "IT"
    return body


def _form_context(values: dict[str, Any], errors: dict[str, str], general: str, **extra: Any) -> dict[str, Any]:
    shown = dict(values)
    for name in ("competences", "keywords"):
        if isinstance(shown.get(name), list):
            shown[name] = ", ".join(shown[name])
    return {"values": shown, "errors": errors, "general": general, "kinds": KINDS, "sectors": SECTORS, **extra}


@router.get("/members/new")
async def new_form(request: Request, user: StaffDep) -> Response:
    return render(request, "members/form.html", _form_context({"country": "IT"}, {}, "", mode="new"))


@router.post("/members/new")
async def create(request: Request, user: StaffDep) -> Response:
    form = await request.form()
    body = _org_body(form, partial=False)
    try:
        created = await gateway_of(request).post("/api/membership/organisations", user.token, json=body)
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        return render(request, "members/form.html", _form_context(body, errors, general, mode="new"), status=422)
    return redirect(request, f"/members/{created['id']}?created=1")


@router.get("/members/{organisation_id}/edit")
async def edit_form(request: Request, organisation_id: str, user: StaffDep) -> Response:
    org = await gateway_of(request).get(f"/api/membership/organisations/{organisation_id}", user.token)
    return render(request, "members/form.html", _form_context(org, {}, "", mode="edit", org=org))


@router.post("/members/{organisation_id}/edit")
async def update(request: Request, organisation_id: str, user: StaffDep) -> Response:
    form = await request.form()
    body = _org_body(form, partial=True)
    gateway = gateway_of(request)
    try:
        await gateway.call("PATCH", f"/api/membership/organisations/{organisation_id}", user.token, json=body)
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        org = await gateway.get(f"/api/membership/organisations/{organisation_id}", user.token)
        context = _form_context({**org, **body}, errors, general, mode="edit", org=org)
        return render(request, "members/form.html", context, status=422)
    return redirect(request, f"/members/{organisation_id}?saved=1")


# -- CSV import ------------------------------------------------------------------------------------


@router.get("/members/import")
async def import_form(request: Request, user: StaffDep) -> Response:
    return render(request, "members/import.html", {})


@router.post("/members/import")
async def import_csv(request: Request, user: StaffDep) -> Response:
    form = await request.form()
    upload = form.get("file")
    data = await upload.read() if upload is not None and hasattr(upload, "read") else b""
    _ = locale_of(request).gettext
    if not data:
        return render(request, "members/import.html", {"general": _("Choose a CSV file.")}, status=422)
    try:
        result = await gateway_of(request).post(
            "/api/membership/organisations/import", user.token, content=data, headers={"Content-Type": "text/csv"}
        )
    except client.Invalid as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        lines = body.get("details") if isinstance(body.get("details"), list) else None
        context = {"general": exc.message, "lines": lines}
        return render(request, "members/import.html", context, status=422)
    return render(request, "members/import.html", {"imported": result["imported"]})


# -- one organisation ------------------------------------------------------------------------------


@router.get("/members/{organisation_id}")
async def organisation(request: Request, organisation_id: str, user: UserDep) -> Response:
    return render(request, "members/organisation.html", await _org_context(request, organisation_id, user))


async def _org_context(request: Request, organisation_id: str, user: User) -> dict[str, Any]:
    gateway = gateway_of(request)
    base = f"/api/membership/organisations/{organisation_id}"
    mine = user.acts_for(organisation_id)
    calls: dict[str, Any] = {
        "figures": gateway.get(base + "/figures", user.token),
        "history": gateway.get(base + "/history", user.token, params={"limit": 20}),
        "projects": gateway.get(
            "/api/projects/projects", user.token, params={"organisation_id": organisation_id, "limit": 50}
        ),
        "profile": gateway.get(f"/api/matchmaking/organisations/{organisation_id}", user.token),
    }
    if user.is_staff:
        calls["contacts"] = gateway.get(base + "/contacts", user.token, params={"limit": 100})
    # The organisation itself (its 403/404 become their pages) and every panel in one round of concurrent calls.
    first: list[Any] = [gateway.get(base, user.token)]
    if not mine and not user.is_staff:
        # Another organisation's page: its yearly figures are private to it. The service decides;
        # its 403 becomes the 403 page (and if it ever answers, only what it answers is shown).
        first.append(gateway.get(base + "/figures", user.token))
    answers = await asyncio.gather(*first, *(panel(c) for c in calls.values()), return_exceptions=True)
    for answer in answers[: len(first)]:
        if isinstance(answer, BaseException):
            raise answer
    org: dict[str, Any] = answers[0]  # type: ignore[assignment]  # not an exception: raised above
    results = answers[len(first) :]
    panels = {k: (r if not isinstance(r, BaseException) else None) for k, r in zip(calls, results, strict=True)}
    for key in ("figures", "history", "contacts", "profile"):
        panels.setdefault(key, None)
    profile = panels.get("profile")
    if profile is not None and not profile.ok and not profile.down:
        panels["profile"] = None
    figures = panels["figures"].data if panels["figures"] is not None and panels["figures"].ok else []
    series = _figures_series(figures or [], locale_of(request).gettext)
    return {
        "org": org,
        "mine": mine,
        "panels": panels,
        "figures": figures or [],
        "series": json.dumps(series),
        "actions": [a for a in org.get("allowed_actions", []) if a in ACTIONS],
        "created": request.query_params.get("created"),
        "saved": request.query_params.get("saved"),
        "section": None,
        "errors": {},
        "general": "",
        "values": {},
    }


def _figures_series(figures: list[dict[str, Any]], _: Any) -> dict[str, Any]:
    rows = sorted(figures, key=lambda f: f["year"])
    return {
        "labels": [str(f["year"]) for f in rows],
        "datasets": [
            {"label": _("Staff"), "data": [f["staff"] for f in rows], "backgroundColor": "#1f5f8b"},
            {"label": _("R&D staff"), "data": [f["rd_staff"] for f in rows], "backgroundColor": "#c2571a"},
            {"label": _("Patents"), "data": [f["patents"] for f in rows], "backgroundColor": "#2e7d4f"},
        ],
    }


async def _org_page_with_errors(
    request: Request,
    organisation_id: str,
    user: User,
    section: str,
    errors: dict[str, str] | None = None,
    general: str = "",
    values: dict[str, Any] | None = None,
    status: int = 422,
) -> Response:
    """The organisation's page again, with the service's messages next to the fields of ``section``."""
    context = await _org_context(request, organisation_id, user)
    context.update(section=section, errors=errors or {}, general=general, values=values or {})
    return render(request, "members/organisation.html", context, status=status)


@router.post("/members/{organisation_id}/figures")
async def save_figures(request: Request, organisation_id: str, user: UserDep) -> Response:
    form = await request.form()
    _ = locale_of(request).gettext
    try:
        year = int(str(form.get("year", "")))
    except ValueError:
        return await _org_page_with_errors(
            request, organisation_id, user, "figures", {"year": _("Enter a year.")}, values=dict(form)
        )
    body: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in ("staff", "rd_staff", "turnover_eur", "lab_m2", "patents"):
        raw = str(form.get(name, "")).strip().replace(" ", "")
        if not raw:
            # The form is the year's whole record (the API's PUT requires every field): a field
            # left blank is 0; staff is required and left to the API to refuse.
            if name != "staff":
                body[name] = 0
            continue
        try:
            body[name] = float(raw.replace(",", ".")) if name in ("turnover_eur", "lab_m2") else int(raw)
        except ValueError:
            errors[name] = _("Enter a number.")
    if errors:
        return await _org_page_with_errors(request, organisation_id, user, "figures", errors, values=dict(form))
    try:
        await gateway_of(request).call(
            "PUT", f"/api/membership/organisations/{organisation_id}/figures/{year}", user.token, json=body
        )
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        return await _org_page_with_errors(request, organisation_id, user, "figures", errors, general, dict(form))
    return redirect(request, f"/members/{organisation_id}?saved=1#figures")


@router.post("/members/{organisation_id}/action/{action}")
async def lifecycle(request: Request, organisation_id: str, action: str, user: StaffDep) -> Response:
    if action not in ACTIONS:
        raise client.NotFound(404, {"message": action})
    form = await request.form()
    reason = str(form.get("reason", "")).strip()[:1000]
    path = f"/api/membership/organisations/{organisation_id}/" + ("renewals" if action == "renew" else action)
    body: dict[str, Any] | None = {} if action in ("approve", "renew") else {"reason": reason}
    try:
        await gateway_of(request).post(path, user.token, json=body)
    except client.Invalid as exc:
        return await _org_page_with_errors(request, organisation_id, user, "lifecycle", general=exc.message)
    return redirect(request, f"/members/{organisation_id}#history")


@router.post("/members/{organisation_id}/contacts")
async def add_contact(request: Request, organisation_id: str, user: StaffDep) -> Response:
    form = await request.form()
    body = {
        "first_name": str(form.get("first_name", "")).strip(),
        "last_name": str(form.get("last_name", "")).strip(),
        "email": str(form.get("email", "")).strip(),
        "role": str(form.get("role", "")).strip(),
        "consent_newsletter": form.get("consent_newsletter") == "on",
        "consent_data_processing": form.get("consent_data_processing") == "on",
        "consent_source": "console",
    }
    if str(form.get("phone", "")).strip():
        body["phone"] = str(form.get("phone")).strip()
    try:
        await gateway_of(request).post(
            f"/api/membership/organisations/{organisation_id}/contacts", user.token, json=body
        )
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        return await _org_page_with_errors(request, organisation_id, user, "contacts", errors, general, dict(form))
    return redirect(request, f"/members/{organisation_id}#contacts")
