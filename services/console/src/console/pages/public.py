"""Public pages, no login: the district's figures (live) and the newsletter sign-up (double opt-in)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from console import client, domain, service
from console.pages._common import panel
from console.web import OptionalUserDep, gateway_of, locale_of, page_router, render, settings_of

router = page_router()


@router.get("/public")
async def figures(request: Request, user: OptionalUserDep) -> Response:
    figures = await panel(gateway_of(request).get("/api/membership/figures"))
    last_id = await service.last_activity_id(request.app.state.ctx.db)
    return render(request, "public/figures.html", {"figures": figures, "last_id": last_id})


def _lists(request: Request) -> list[tuple[str, str]]:
    return [(slug, slug.replace("-", " ").capitalize()) for slug in settings_of(request).signup_lists]


@router.get("/public/newsletter")
async def signup_form(request: Request, user: OptionalUserDep) -> Response:
    return render(request, "public/signup.html", {"lists": _lists(request), "values": {}, "errors": {}})


@router.post("/public/newsletter")
async def signup(request: Request, user: OptionalUserDep) -> Response:
    form = await request.form()
    _ = locale_of(request).gettext
    offered = {slug for slug, _label in _lists(request)}
    chosen = [s for s in form.getlist("lists") if s in offered]
    values = {"email": str(form.get("email", "")).strip()[:254], "name": str(form.get("name", "")).strip()[:200]}
    errors: dict[str, str] = {}
    if not chosen:
        errors["lists"] = _("Choose at least one list.")
    if form.get("consent") != "on":
        errors["consent"] = _("Tick the box to agree, or we cannot send you anything.")
    context = {"lists": _lists(request), "values": values, "chosen": chosen, "errors": errors}
    if errors:
        return render(request, "public/signup.html", context, status=422)
    body = {
        **values,
        "lists": chosen,
        "language": locale_of(request).language,
        "consent": True,
        "source": "console-public-form",
    }
    try:
        await gateway_of(request).post("/api/newsletter/signup", json=body)
    except client.Invalid as exc:
        if exc.status == 429:
            context["general"] = _("Too many sign-ups from here. Try again later.")
        else:
            context["errors"], context["general"] = domain.field_errors(exc.body)
        return render(request, "public/signup.html", context, status=exc.status)
    return render(request, "public/signup.html", {**context, "done": True})
