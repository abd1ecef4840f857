"""Newsletter: lists and subscribers (search, export, erase), templates with a live preview, campaigns
(create, recipients, test send, schedule, start/pause/resume/cancel, live progress)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response

from console import client, domain, preview
from console.pages._common import items, panel
from console.web import ROME, StaffDep, User, gateway_of, locale_of, page_router, redirect, render

router = page_router()
API = "/api/newsletter"
CAMPAIGN_ACTIONS = ("start", "pause", "resume", "cancel", "unschedule")
SUBSCRIBERS_PAGE = 50


@router.get("/newsletter")
async def index(request: Request, user: StaffDep) -> Response:
    gateway = gateway_of(request)
    lists, campaigns, templates, mails = await asyncio.gather(
        panel(gateway.get(f"{API}/lists", user.token, params={"limit": 200})),
        panel(gateway.get(f"{API}/campaigns", user.token, params={"limit": 50})),
        panel(gateway.get(f"{API}/templates", user.token, params={"limit": 200})),
        panel(gateway.get(f"{API}/transactional-mails", user.token)),
    )
    context = {"lists": lists, "campaigns": campaigns, "templates": templates, "mails": mails}
    return render(request, "newsletter/index.html", context)


@router.post("/newsletter/lists")
async def create_list(request: Request, user: StaffDep) -> Response:
    form = await request.form()
    body = {
        "slug": str(form.get("slug", "")).strip(),
        "name": str(form.get("name", "")).strip(),
        "description": str(form.get("description", "")).strip(),
        "visibility": "private" if form.get("visibility") == "private" else "public",
    }
    try:
        await gateway_of(request).post(f"{API}/lists", user.token, json=body)
    except client.Invalid as exc:
        gateway = gateway_of(request)
        lists, campaigns, templates, mails = await asyncio.gather(
            panel(gateway.get(f"{API}/lists", user.token, params={"limit": 200})),
            panel(gateway.get(f"{API}/campaigns", user.token, params={"limit": 50})),
            panel(gateway.get(f"{API}/templates", user.token, params={"limit": 200})),
            panel(gateway.get(f"{API}/transactional-mails", user.token)),
        )
        errors, general = domain.field_errors(exc.body)
        context: dict[str, Any] = {"lists": lists, "campaigns": campaigns, "templates": templates, "mails": mails}
        context.update(errors=errors, general=general, values=body)
        return render(request, "newsletter/index.html", context, status=422)
    return redirect(request, "/newsletter")


# -- subscribers -------------------------------------------------------------------------------------


@router.get("/newsletter/subscribers")
async def subscribers(
    request: Request, user: StaffDep, q: str = "", status: str = "", list: str = "", offset: int = 0
) -> Response:
    """Everyone the service holds, searched by the service (address or name), a page at a time."""
    q, offset = q.strip()[:200], max(0, offset)
    params = {
        "limit": SUBSCRIBERS_PAGE,
        "offset": offset,
        "q": q or None,
        "status": status or None,
        "list": list or None,
    }
    page = await gateway_of(request).get(f"{API}/subscribers", user.token, params=params)
    filters = {k: v for k, v in (("q", q), ("status", status), ("list", list)) if v}
    context = {
        "rows": items(page),
        "total": page["total"],
        "pager": domain.pages(page["total"], SUBSCRIBERS_PAGE, offset),
        "filters": filters,
        "q": q,
        "status": status,
        "list": list,
    }
    return render(request, "newsletter/subscribers.html", context)


@router.get("/newsletter/subscribers/{subscriber_id}/export")
async def export_subscriber(request: Request, subscriber_id: str, user: StaffDep) -> Response:
    data = await gateway_of(request).get(f"{API}/subscribers/{subscriber_id}/export", user.token)
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="subscriber-{subscriber_id}.json"'},
    )


@router.post("/newsletter/subscribers/{subscriber_id}/erase")
async def erase_subscriber(request: Request, subscriber_id: str, user: StaffDep) -> Response:
    await gateway_of(request).call("DELETE", f"{API}/subscribers/{subscriber_id}", user.token)
    return redirect(request, "/newsletter/subscribers?erased=1")


# -- templates -----------------------------------------------------------------------------------------


def _template_values(form: Any) -> dict[str, str]:
    return {k: str(form.get(k, "")) for k in ("name", "subject", "body_html", "body_text")}


@router.get("/newsletter/templates/new")
async def new_template(request: Request, user: StaffDep) -> Response:
    values = {
        "name": "",
        "subject": "",
        "body_html": "<h1>{{ campaign.name }}</h1>\n<p>Gentile {{ subscriber.name }},</p>\n",
        "body_text": "{{ campaign.name }}\n\nGentile {{ subscriber.name }},\n",
    }
    return render(request, "newsletter/template.html", _template_context(values, None))


def _template_context(values: dict[str, Any], template_id: str | None, **extra: Any) -> dict[str, Any]:
    shown = preview.render_preview(values.get("subject", ""), values.get("body_html", ""), values.get("body_text", ""))
    return {"values": values, "template_id": template_id, "preview": shown, "errors": {}, "general": "", **extra}


@router.get("/newsletter/templates/{template_id}")
async def edit_template(request: Request, template_id: str, user: StaffDep) -> Response:
    found = await gateway_of(request).get(f"{API}/templates/{template_id}", user.token)
    return render(request, "newsletter/template.html", _template_context(found, template_id))


@router.post("/newsletter/templates/preview")
async def preview_template(request: Request, user: StaffDep) -> Response:
    """The preview fragment, asked for by htmx while the author types."""
    values = _template_values(await request.form())
    shown = preview.render_preview(values["subject"], values["body_html"], values["body_text"], values["name"])
    return render(request, "newsletter/_preview.html", {"preview": shown})


@router.post("/newsletter/templates")
async def save_template(request: Request, user: StaffDep) -> Response:
    form = await request.form()
    values = _template_values(form)
    template_id = str(form.get("template_id", "")) or None
    gateway = gateway_of(request)
    try:
        if template_id:
            await gateway.call("PATCH", f"{API}/templates/{template_id}", user.token, json=values)
        else:
            template_id = (await gateway.post(f"{API}/templates", user.token, json=values))["id"]
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        context = _template_context(values, template_id, errors=errors, general=general)
        return render(request, "newsletter/template.html", context, status=422)
    return redirect(request, f"/newsletter/templates/{template_id}?saved=1")


# -- campaigns -----------------------------------------------------------------------------------------


async def _campaign_form_context(request: Request, user: User, **extra: Any) -> dict[str, Any]:
    gateway = gateway_of(request)
    lists, templates, segments = await asyncio.gather(
        gateway.get(f"{API}/lists", user.token, params={"limit": 200}),
        gateway.get(f"{API}/templates", user.token, params={"limit": 200}),
        gateway.get(f"{API}/segments", user.token, params={"limit": 200}),
    )
    return {
        "lists": items(lists),
        "templates": items(templates),
        "segments": items(segments),
        "errors": {},
        "general": "",
        "values": {},
        **extra,
    }


@router.get("/newsletter/campaigns/new")
async def new_campaign(request: Request, user: StaffDep) -> Response:
    context = await _campaign_form_context(request, user)
    chosen = request.query_params.get("template_id")
    context["values"] = {"template_id": chosen} if chosen else {}
    return render(request, "newsletter/campaign_new.html", context)


SAMPLE_SIZE = 5
"""How many of a chosen segment's members the new-campaign form shows."""


@router.post("/newsletter/campaigns/recipients")
async def recipients(request: Request, user: StaffDep) -> Response:
    """How many people the choice reaches (the service counts it as a start would select them), and
    each chosen segment now: its count and the first few of its members, by address (htmx, while choosing)."""
    form = await request.form()
    chosen = [str(x) for x in form.getlist("lists")][:50]
    segment_ids = [str(x) for x in form.getlist("segments")][:20]
    interests = domain.split_list(str(form.get("interests", "")))[:30]
    gateway = gateway_of(request)
    count: int | None = None
    problem = ""
    if chosen:
        choice = {"lists": chosen, "interests": interests, "segments": segment_ids}
        try:
            count = (await gateway.post(f"{API}/campaigns/recipients", user.token, json=choice))["recipients"]
        except client.Invalid as exc:
            problem = exc.message
    counts = await asyncio.gather(
        *(gateway.get(f"{API}/segments/{quote(sid, safe='')}", user.token) for sid in segment_ids),
        *(
            gateway.get(f"{API}/segments/{quote(sid, safe='')}/sample", user.token, params={"limit": SAMPLE_SIZE})
            for sid in segment_ids
        ),
    )
    half = len(segment_ids)
    segments = [
        {"name": seg["name"], "count": page["total"], "sample": [m["email"] for m in page["items"]]}
        for seg, page in zip(counts[:half], counts[half:], strict=True)
    ]
    context = {"count": count, "chosen": len(chosen), "segments": segments, "problem": problem}
    return render(request, "newsletter/_recipients.html", context)


@router.post("/newsletter/campaigns")
async def create_campaign(request: Request, user: StaffDep) -> Response:
    form = await request.form()
    body: dict[str, Any] = {
        "name": str(form.get("name", "")).strip(),
        "subject": str(form.get("subject", "")).strip(),
        "template_id": str(form.get("template_id", "")),
        "lists": list(form.getlist("lists")),
        "interests": domain.split_list(str(form.get("interests", ""))),
        "segments": list(form.getlist("segments")),
    }
    intro = str(form.get("intro", "")).strip()
    if intro:
        body["data"] = {"intro": intro}
    try:
        created = await gateway_of(request).post(f"{API}/campaigns", user.token, json=body)
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        context = await _campaign_form_context(request, user, errors=errors, general=general, values=body)
        return render(request, "newsletter/campaign_new.html", context, status=422)
    return redirect(request, f"/newsletter/campaigns/{created['id']}")


async def _campaign_context(request: Request, campaign_id: str, user: User, *, count: bool = True) -> dict[str, Any]:
    gateway = gateway_of(request)
    campaign = await gateway.get(f"{API}/campaigns/{campaign_id}", user.token)
    stats = campaign.get("stats") or {}
    done = sum(int(stats.get(k, 0)) for k in ("sent", "failed", "skipped", "cancelled"))
    context = {"c": campaign, "stats": stats, "done": done, "live": campaign["status"] in ("running", "scheduled")}
    if count:
        context["segment_names"] = await _segment_names(request, user, campaign.get("segments") or [])
    if count and campaign["status"] in ("draft", "scheduled"):
        # the service counts the audience its start would freeze (lists, interests, segments, consent)
        context["audience"] = await gateway.get(f"{API}/campaigns/{quote(campaign_id, safe='')}/recipients", user.token)
    return context


async def _segment_names(request: Request, user: User, segment_ids: list[str]) -> list[str]:
    """The names of the segments a campaign targets (the id of one deleted since its start)."""
    gateway = gateway_of(request)

    async def name(segment_id: str) -> str:
        try:
            return str((await gateway.get(f"{API}/segments/{quote(segment_id, safe='')}", user.token))["name"])
        except client.NotFound:
            return segment_id

    return list(await asyncio.gather(*(name(sid) for sid in segment_ids)))


@router.get("/newsletter/campaigns/{campaign_id}")
async def campaign_page(request: Request, campaign_id: str, user: StaffDep) -> Response:
    context = await _campaign_context(request, campaign_id, user)
    context.update(general=request.query_params.get("error", "")[:300], tested=request.query_params.get("tested"))
    return render(request, "newsletter/campaign.html", context)


@router.get("/newsletter/campaigns/{campaign_id}/progress")
async def campaign_progress(request: Request, campaign_id: str, user: StaffDep) -> Response:
    """The progress fragment htmx polls while the campaign runs (it stops polling when it ends)."""
    context = await _campaign_context(request, campaign_id, user, count=False)
    return render(request, "newsletter/_progress.html", context)


@router.post("/newsletter/campaigns/{campaign_id}/action/{action}")
async def campaign_action(request: Request, campaign_id: str, action: str, user: StaffDep) -> Response:
    if action not in CAMPAIGN_ACTIONS:
        raise client.NotFound(404, {"message": action})
    try:
        await gateway_of(request).post(f"{API}/campaigns/{campaign_id}/{action}", user.token)
    except client.Invalid as exc:
        return await _campaign_error(request, campaign_id, user, exc.message)
    return redirect(request, f"/newsletter/campaigns/{campaign_id}")


@router.post("/newsletter/campaigns/{campaign_id}/schedule")
async def schedule(request: Request, campaign_id: str, user: StaffDep) -> Response:
    form = await request.form()
    _ = locale_of(request).gettext
    try:
        when = datetime.fromisoformat(str(form.get("send_at", ""))).replace(tzinfo=ROME)
    except ValueError:
        return await _campaign_error(request, campaign_id, user, _("Enter a date and time."))
    try:
        await gateway_of(request).post(
            f"{API}/campaigns/{campaign_id}/schedule", user.token, json={"send_at": when.isoformat()}
        )
    except client.Invalid as exc:
        return await _campaign_error(request, campaign_id, user, exc.message)
    return redirect(request, f"/newsletter/campaigns/{campaign_id}")


@router.post("/newsletter/campaigns/{campaign_id}/test")
async def test_send(request: Request, campaign_id: str, user: StaffDep) -> Response:
    form = await request.form()
    emails = domain.split_list(str(form.get("emails", "")))[:10]
    try:
        results = await gateway_of(request).post(
            f"{API}/campaigns/{campaign_id}/test", user.token, json={"emails": emails}
        )
    except client.Invalid as exc:
        return await _campaign_error(request, campaign_id, user, exc.message)
    context = await _campaign_context(request, campaign_id, user)
    context["tests"] = results
    return render(request, "newsletter/campaign.html", context)


async def _campaign_error(request: Request, campaign_id: str, user: User, message: str) -> Response:
    context = await _campaign_context(request, campaign_id, user)
    context["general"] = message
    return render(request, "newsletter/campaign.html", context, status=409)
