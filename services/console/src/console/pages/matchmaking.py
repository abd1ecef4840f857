"""Matchmaking: opportunities (the five EEN types and EU-call partner searches), ranked counterparts with
their explanation, the match board (proposed → accepted / declined → meeting scheduled → held) with feedback."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from console import client, domain
from console.pages._common import items, panel
from console.web import ROME, User, UserDep, gateway_of, locale_of, page_router, redirect, render

router = page_router()
API = "/api/matchmaking"
TYPES = ["technology_offer", "technology_request", "rd_request", "business_offer", "business_request", "partner_search"]
STATES = ["proposed", "accepted", "declined", "meeting_scheduled", "meeting_held"]


async def _opportunities(request: Request, user: User) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": 500}
    if not user.is_staff and user.organisation_id:
        params["owner_organisation_id"] = user.organisation_id
    return items(await gateway_of(request).get(f"{API}/opportunities", user.token, params=params))


@router.get("/matchmaking")
async def index(request: Request, user: UserDep) -> Response:
    return await _board(request, user)


async def _board(request: Request, user: User, error: str = "") -> Response:
    opportunities, matches = await asyncio.gather(
        panel(_opportunities(request, user)),
        panel(gateway_of(request).get(f"{API}/matches", user.token, params={"limit": 200})),
    )
    owners = {o["id"]: o["owner_organisation_id"] for o in (opportunities.data or [])}
    titles = {o["id"]: o["title"] for o in (opportunities.data or [])}
    board: dict[str, list[dict[str, Any]]] = {state: [] for state in STATES}
    for match in items(matches.data) if matches.ok else []:
        match["my_side"] = _side_of(user, match, owners)
        board.setdefault(match["state"], []).append(match)
    return render(
        request,
        "matchmaking/index.html",
        {
            "opportunities": opportunities,
            "matches": matches,
            "board": board,
            "titles": titles,
            "states": STATES,
            "general": error,
        },
        status=409 if error else 200,
    )


def _side_of(user: User, match: dict[str, Any], owners: dict[str, str]) -> str | None:
    """Which side of a match the user answers for (staff: both, chosen on the card)."""
    if user.is_staff:
        return None
    if owners.get(match["opportunity_id"]) == user.organisation_id:
        return "opportunity"
    counterpart_owner = owners.get(match["counterpart_id"]) if match["counterpart_type"] == "opportunity" else None
    if match["counterpart_id"] == user.organisation_id or counterpart_owner == user.organisation_id:
        return "counterpart"
    return "counterpart"


def _form_body(form: Any, user: User) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": str(form.get("title", "")).strip(),
        "summary": str(form.get("summary", "")).strip(),
        "keywords": domain.split_list(str(form.get("keywords", ""))),
        "sectors": [s for s in form.getlist("sectors") if s],
    }
    kind = str(form.get("opportunity_type", ""))
    if kind:
        body["opportunity_type"] = kind
    owner = str(form.get("owner_organisation_id", "")).strip() or (user.organisation_id or "")
    if owner:
        body["owner_organisation_id"] = owner
    for name in ("topic_code", "deadline", "country", "role_sought", "expires_on"):
        value = str(form.get(name, "")).strip()
        if value:
            body[name] = value
    return body


def _form_context(values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    shown = dict(values)
    if isinstance(shown.get("keywords"), list):
        shown["keywords"] = ", ".join(shown["keywords"])
    from console.pages.members import SECTORS

    return {"values": shown, "types": TYPES, "sectors": SECTORS, "errors": {}, "general": "", **extra}


@router.get("/matchmaking/opportunities/new")
async def new_opportunity(request: Request, user: UserDep) -> Response:
    values = {"opportunity_type": "technology_offer", "owner_organisation_id": user.organisation_id or ""}
    return render(request, "matchmaking/form.html", _form_context(values, opportunity_id=None))


@router.post("/matchmaking/opportunities")
async def save_opportunity(request: Request, user: UserDep) -> Response:
    form = await request.form()
    body = _form_body(form, user)
    opportunity_id = str(form.get("opportunity_id", "")) or None
    gateway = gateway_of(request)
    try:
        if opportunity_id:
            # type, owner and expiry are set when the opportunity is published (the update refuses them)
            patch = {
                k: v for k, v in body.items() if k not in ("opportunity_type", "owner_organisation_id", "expires_on")
            }
            await gateway.call("PATCH", f"{API}/opportunities/{opportunity_id}", user.token, json=patch)
        else:
            opportunity_id = (await gateway.post(f"{API}/opportunities", user.token, json=body))["id"]
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        context = _form_context(body, opportunity_id=opportunity_id, errors=errors, general=general)
        return render(request, "matchmaking/form.html", context, status=422)
    return redirect(request, f"/matchmaking/opportunities/{opportunity_id}")


@router.get("/matchmaking/opportunities/{opportunity_id}/edit")
async def edit_opportunity(request: Request, opportunity_id: str, user: UserDep) -> Response:
    found = await gateway_of(request).get(f"{API}/opportunities/{opportunity_id}", user.token)
    return render(request, "matchmaking/form.html", _form_context(found, opportunity_id=opportunity_id))


def highlight(text: str, terms: list[str]) -> Markup:
    """``text`` with the matched terms in ``<mark>`` (escaped; whole words, case-insensitive)."""
    import re

    words = sorted({t for t in terms if t and len(t) > 1}, key=len, reverse=True)
    if not words:
        return Markup(escape(text))
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\w*", re.IGNORECASE)
    out, last = [], 0
    for m in pattern.finditer(text):
        out.append(escape(text[last : m.start()]))
        out.append(Markup("<mark>") + escape(m.group(0)) + Markup("</mark>"))
        last = m.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


@router.get("/matchmaking/opportunities/{opportunity_id}")
async def opportunity(request: Request, opportunity_id: str, user: UserDep) -> Response:
    gateway = gateway_of(request)
    found, ranked = await asyncio.gather(  # the opportunity and its ranked counterparts at once
        gateway.get(f"{API}/opportunities/{opportunity_id}", user.token),
        panel(gateway.get(f"{API}/opportunities/{opportunity_id}/counterparts", user.token, params={"limit": 10})),
    )
    rows = []
    for row in items(ranked.data) if ranked.ok else []:
        explanation = row.get("explanation") or {}
        terms = [t for ts in (explanation.get("matched_fields") or {}).values() for t in ts]
        rows.append({**row, "title_marked": highlight(row["title"], terms), "terms": terms})
    return render(request, "matchmaking/opportunity.html", {"o": found, "ranked": ranked, "rows": rows})


@router.post("/matchmaking/opportunities/{opportunity_id}/propose")
async def propose(request: Request, opportunity_id: str, user: UserDep) -> Response:
    form = await request.form()
    body = {
        "opportunity_id": opportunity_id,
        "counterpart_type": str(form.get("counterpart_type", "")),
        "counterpart_id": str(form.get("counterpart_id", "")),
    }
    await gateway_of(request).post(f"{API}/matches", user.token, json=body)
    return redirect(request, "/matchmaking#board")


@router.post("/matchmaking/matches/{match_id}/{step}")
async def match_step(request: Request, match_id: str, step: str, user: UserDep) -> Response:
    form = await request.form()
    side = str(form.get("side", "")) or None
    _ = locale_of(request).gettext
    body: dict[str, Any]
    if step in ("accept", "decline"):
        body, path = {"side": side}, f"{API}/matches/{match_id}/{step}"
    elif step == "meeting":
        try:
            when = datetime.fromisoformat(str(form.get("scheduled_at", ""))).replace(tzinfo=ROME)
        except ValueError:
            return await _board_error(request, user, _("Enter the meeting's date and time."))
        body = {"scheduled_at": when.isoformat(), "place": str(form.get("place", "")).strip() or None}
        path = f"{API}/matches/{match_id}/meeting"
    elif step == "held":
        body, path = {}, f"{API}/matches/{match_id}/meeting/held"
    elif step == "feedback":
        body = {"side": side, "useful": form.get("useful") == "yes", "comment": str(form.get("comment", ""))[:2000]}
        path = f"{API}/matches/{match_id}/feedback"
    else:
        raise client.NotFound(404, {"message": step})
    try:
        await gateway_of(request).post(path, user.token, json=body)
    except client.Invalid as exc:
        return await _board_error(request, user, exc.message)
    return redirect(request, "/matchmaking#board")


async def _board_error(request: Request, user: User, message: str) -> Response:
    return await _board(request, user, message)
