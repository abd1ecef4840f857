"""Newsletter segments: the list with each one's count now, a rule on a form (all of / any of / none of
conditions over the register's attributes, lists and interests) with its members now as it is written,
edit and delete. The rules, their checks and the counting are the newsletter's."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response

from console import client, domain
from console.domain import RuleRow
from console.pages._common import items
from console.web import StaffDep, User, gateway_of, locale_of, page_router, redirect, render

router = page_router()
API = "/api/newsletter"
SAMPLE_SIZE = 5
MAX_ROWS = 50


def _field_labels(request: Request) -> dict[str, str]:
    _ = locale_of(request).gettext
    return {
        "sector": _("Sector"),
        "kind": _("Kind of organisation"),
        "size_class": _("Size class"),
        "province": _("Province"),
        "status": _("Membership status"),
        "keyword": _("Competence keyword"),
        "project": _("EU project (acronym)"),
        "role": _("Contact's role"),
        "list": _("List (short name)"),
        "interest": _("Interest"),
    }


def _form_context(
    request: Request,
    values: dict[str, Any],
    segment_id: str | None,
    group: str,
    rows: list[RuleRow],
    rule_json: str = "",
    **extra: Any,
) -> dict[str, Any]:
    shown = rows + [RuleRow()] * max(domain.SEGMENT_ROWS - len(rows), 2)
    return {
        "values": values,
        "segment_id": segment_id,
        "group": group,
        "rows": shown,
        "rule_json": rule_json,
        "fields": domain.SEGMENT_FIELDS,
        "field_labels": _field_labels(request),
        "errors": {},
        "general": "",
        **extra,
    }


def _of_rule(rule: Any) -> tuple[str, list[RuleRow], str]:
    """A stored rule on the form: its rows, or its JSON when it does not fit one group of conditions."""
    fitted = domain.rows_from_rule(rule)
    if fitted is None:
        return "all", [], json.dumps(rule, indent=2, ensure_ascii=False)
    return fitted[0], fitted[1], ""


def _posted_rule(form: Any) -> tuple[str, list[RuleRow], str]:
    rows = [
        RuleRow(str(f), str(o), str(v))
        for f, o, v in zip(form.getlist("field"), form.getlist("operator"), form.getlist("values"), strict=False)
    ][:MAX_ROWS]
    return str(form.get("group", "all")), rows, str(form.get("rule_json", "")).strip()


def _rule(request: Request, group: str, rows: list[RuleRow], rule_json: str) -> tuple[Any, dict[str, str]]:
    """The rule the form describes, or the form's own error (the service checks the rest)."""
    _ = locale_of(request).gettext
    if rule_json:
        try:
            return json.loads(rule_json), {}
        except ValueError as exc:
            return None, {"rule_json": _("This is not JSON: %(reason)s") % {"reason": exc}}
    rule = domain.rule_from_rows(group, [r for r in rows if r.field])
    if rule is None:
        return None, {"rule": _("Fill in at least one condition: an attribute and its values.")}
    return rule, {}


@router.get("/newsletter/segments")
async def index(request: Request, user: StaffDep) -> Response:
    gateway = gateway_of(request)
    page = await gateway.get(f"{API}/segments", user.token, params={"limit": 200})
    found = items(page)
    counts = await asyncio.gather(
        *(gateway.get(f"{API}/segments/{quote(s['id'], safe='')}/count", user.token) for s in found)
    )
    segments = [{**s, "count": c["count"]} for s, c in zip(found, counts, strict=True)]
    context = {
        "segments": segments,
        "total": page["total"],
        "saved": request.query_params.get("saved"),
        "deleted": request.query_params.get("deleted"),
    }
    return render(request, "newsletter/segments.html", context)


@router.get("/newsletter/segments/new")
async def new(request: Request, user: StaffDep) -> Response:
    return render(request, "newsletter/segment.html", _form_context(request, {}, None, "all", []))


@router.post("/newsletter/segments/preview")
async def preview(request: Request, user: StaffDep) -> Response:
    """The members of the rule as it is written now: the count and the first few, by address (htmx)."""
    rule, errors = _rule(request, *_posted_rule(await request.form()))
    context: dict[str, Any] = {"problem": next(iter(errors.values()), ""), "count": None, "sample": []}
    if rule is not None:
        try:
            page = await gateway_of(request).post(
                f"{API}/segments/preview", user.token, json={"rule": rule}, params={"limit": SAMPLE_SIZE}
            )
        except client.Invalid as exc:
            fields, general = domain.field_errors(exc.body)
            context["problem"] = "; ".join(p for p in [*fields.values(), general] if p)
        else:
            context.update(count=page["total"], sample=[m["email"] for m in page["items"]])
    return render(request, "newsletter/_segment_preview.html", context)


def _body(form: Any, rule: Any) -> dict[str, Any]:
    return {
        "name": str(form.get("name", "")).strip(),
        "description": str(form.get("description", "")).strip(),
        "rule": rule,
        "digest": form.get("digest") == "on",
        "welcome": form.get("welcome") == "on",
    }


async def _save(request: Request, user: User, segment_id: str | None) -> Response:
    form = await request.form()
    group, rows, rule_json = _posted_rule(form)
    rule, errors = _rule(request, group, rows, rule_json)
    body = _body(form, rule)
    general = ""
    if not errors:
        gateway = gateway_of(request)
        try:
            if segment_id:
                await gateway.call("PATCH", f"{API}/segments/{quote(segment_id, safe='')}", user.token, json=body)
            else:
                segment_id = (await gateway.post(f"{API}/segments", user.token, json=body))["id"]
        except client.Invalid as exc:
            errors, general = domain.field_errors(exc.body)
        else:
            return redirect(request, "/newsletter/segments?saved=1")
    shown = [r for r in rows if r.field or r.values.strip()]
    context = _form_context(request, body, segment_id, group, shown, rule_json, errors=errors, general=general)
    return render(request, "newsletter/segment.html", context, status=422)


@router.post("/newsletter/segments")
async def create(request: Request, user: StaffDep) -> Response:
    return await _save(request, user, None)


@router.get("/newsletter/segments/{segment_id}")
async def edit(request: Request, segment_id: str, user: StaffDep) -> Response:
    found = await gateway_of(request).get(f"{API}/segments/{quote(segment_id, safe='')}", user.token)
    group, rows, rule_json = _of_rule(found["rule"])
    return render(
        request, "newsletter/segment.html", _form_context(request, found, found["id"], group, rows, rule_json)
    )


@router.post("/newsletter/segments/{segment_id}")
async def update(request: Request, segment_id: str, user: StaffDep) -> Response:
    return await _save(request, user, segment_id)


@router.post("/newsletter/segments/{segment_id}/delete")
async def delete(request: Request, segment_id: str, user: StaffDep) -> Response:
    gateway = gateway_of(request)
    try:
        await gateway.call("DELETE", f"{API}/segments/{quote(segment_id, safe='')}", user.token)
    except client.Invalid as exc:  # 409: a campaign not yet started targets it
        found = await gateway.get(f"{API}/segments/{quote(segment_id, safe='')}", user.token)
        group, rows, rule_json = _of_rule(found["rule"])
        context = _form_context(request, found, found["id"], group, rows, rule_json, general=exc.message)
        return render(request, "newsletter/segment.html", context, status=409)
    return redirect(request, "/newsletter/segments?deleted=1")
