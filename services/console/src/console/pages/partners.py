"""Partner systems (admin): partners with their event types, the API key they stream with (shown
once), webhook endpoints with their delivery log, secret rotation (shown once), replay, enable,
disable, deactivate. Everything goes through the gateway to the partners service."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from console import client, domain
from console.pages._common import items, panel
from console.web import User, UserDep, gateway_of, locale_of, page_router, redirect, render

router = page_router()
API = "/api/partners"
KEY = {"role": "partner", "scopes": ["GET /api/partners/stream"]}
"""A partner's key may only open its stream (the partners service narrows it to its grant)."""


async def _types(request: Request, user: User) -> list[dict[str, str]]:
    catalogue = await panel(gateway_of(request).get(f"{API}/catalogue", user.token))
    if not catalogue.ok:
        return []
    return [{"type": t["type"], "description": t["description"]} for t in catalogue.data.get("types", [])]


async def _index(request: Request, user: User, status: int = 200, **extra: Any) -> Response:
    partners, types = await asyncio.gather(
        panel(gateway_of(request).get(f"{API}/partners", user.token, params={"limit": 200})), _types(request, user)
    )
    context = {
        "partners": items(partners.data) if partners.ok else [],
        "down": partners.down,
        "types": types,
        "errors": {},
        "general": "",
        "values": {},
        **extra,
    }
    return render(request, "partners/index.html", context, status=status)


@router.get("/partners")
async def index(request: Request, user: UserDep) -> Response:
    return await _index(request, user)


@router.post("/partners")
async def create_partner(request: Request, user: UserDep) -> Response:
    """A partner and, unless the admin picked an existing key, a new API key of role partner."""
    form = await request.form()
    gateway = gateway_of(request)
    name = str(form.get("name", "")).strip()
    body: dict[str, Any] = {"name": name, "event_types": [str(t) for t in form.getlist("event_types")]}
    contact = str(form.get("contact_email", "")).strip()
    if contact:
        body["contact_email"] = contact
    days = str(form.get("key_days", "365")).strip()
    values = {**body, "key_days": days}
    _ = locale_of(request).gettext
    errors = {"name": _("Give the partner's name.")} if not name else {}
    if not body["event_types"]:
        errors["event_types"] = _("Choose at least one event type.")
    if not days.isdigit() or not 1 <= int(days) <= 3650:
        errors["key_days"] = _("Give a number of days.")
    if errors:
        return await _index(request, user, 422, errors=errors, values=values)
    issued = None
    try:
        key_body = KEY | {"name": f"partner: {name}", "expires_in_days": int(days)}
        issued = await gateway.post("/auth/api-keys", user.token, json=key_body)
        body["api_key_id"] = issued["id"]
        partner = await gateway.post(f"{API}/partners", user.token, json=body)
    except client.Invalid as exc:
        if issued is not None:  # the partner was refused: its key must not stay valid
            await gateway.call("DELETE", f"/auth/api-keys/{issued['id']}", user.token)
        errors, general = domain.field_errors(exc.body)
        if "expires_in_days" in errors:
            errors["key_days"] = errors.pop("expires_in_days")
        return await _index(request, user, 422, errors=errors, general=general or exc.message, values=values)
    return await _detail(request, user, partner["id"], 201, issued=issued)


async def _detail(request: Request, user: User, partner_id: str, status: int = 200, **extra: Any) -> Response:
    gateway = gateway_of(request)
    partner, endpoints, types = await asyncio.gather(
        gateway.get(f"{API}/partners/{partner_id}", user.token),
        gateway.get(f"{API}/partners/{partner_id}/webhooks", user.token),
        _types(request, user),
    )
    logs = await asyncio.gather(
        *(panel(gateway.get(f"{API}/webhooks/{e['id']}/attempts", user.token, params={"limit": 10})) for e in endpoints)
    )
    for endpoint, log in zip(endpoints, logs, strict=True):
        endpoint["attempts"] = items(log.data) if log.ok else []
    context = {
        "partner": partner,
        "endpoints": endpoints,
        "types": [t for t in types if t["type"] in partner["event_types"]],
        "errors": {},
        "general": "",
        "values": {},
        "notice": request.query_params.get("done", ""),
        **extra,
    }
    return render(request, "partners/partner.html", context, status=status)


@router.get("/partners/{partner_id}")
async def detail(request: Request, partner_id: str, user: UserDep) -> Response:
    return await _detail(request, user, partner_id)


@router.post("/partners/{partner_id}/active")
async def set_active(request: Request, partner_id: str, user: UserDep) -> Response:
    form = await request.form()
    active = form.get("active") == "true"
    await gateway_of(request).call("PATCH", f"{API}/partners/{partner_id}", user.token, json={"active": active})
    return redirect(request, f"/partners/{partner_id}?done={'activated' if active else 'deactivated'}")


@router.post("/partners/{partner_id}/webhooks")
async def add_endpoint(request: Request, partner_id: str, user: UserDep) -> Response:
    form = await request.form()
    body = {"url": str(form.get("url", "")).strip(), "event_types": [str(t) for t in form.getlist("event_types")]}
    try:
        created = await gateway_of(request).post(f"{API}/partners/{partner_id}/webhooks", user.token, json=body)
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        return await _detail(request, user, partner_id, 422, errors=errors, general=general or exc.message, values=body)
    return await _detail(request, user, partner_id, 201, secret={"url": created["url"], "secret": created["secret"]})


@router.post("/partners/{partner_id}/webhooks/{endpoint_id}/rotate")
async def rotate(request: Request, partner_id: str, endpoint_id: str, user: UserDep) -> Response:
    rotated = await gateway_of(request).post(f"{API}/webhooks/{endpoint_id}/rotate-secret", user.token)
    return await _detail(request, user, partner_id, secret={"url": rotated["url"], "secret": rotated["secret"]})


@router.post("/partners/{partner_id}/webhooks/{endpoint_id}/state")
async def endpoint_state(request: Request, partner_id: str, endpoint_id: str, user: UserDep) -> Response:
    form = await request.form()
    action = "enable" if form.get("enabled") == "true" else "disable"
    await gateway_of(request).post(f"{API}/webhooks/{endpoint_id}/{action}", user.token)
    return redirect(request, f"/partners/{partner_id}?done={action}d")


@router.post("/partners/{partner_id}/webhooks/{endpoint_id}/replay")
async def replay(request: Request, partner_id: str, endpoint_id: str, user: UserDep) -> Response:
    form = await request.form()
    event_id = str(form.get("event_id", "")).strip()
    since = str(form.get("since", "")).strip()
    body: dict[str, Any] = {"event_id": event_id} if event_id else {}
    if since and not event_id:
        try:
            body["since"] = datetime.fromisoformat(since).replace(tzinfo=UTC).isoformat()
        except ValueError:
            _ = locale_of(request).gettext
            return await _detail(request, user, partner_id, 422, general=_("Give a date and time to replay from."))
    try:
        done = await gateway_of(request).post(f"{API}/webhooks/{endpoint_id}/replay", user.token, json=body)
    except (client.Invalid, client.NotFound) as exc:
        return await _detail(request, user, partner_id, 422, general=exc.message, replay_for=endpoint_id)
    return await _detail(request, user, partner_id, replayed=int(done["queued"]))
