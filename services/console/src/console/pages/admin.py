"""Administration: user accounts and roles, partner API keys (shown once, revocable)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from console import client, domain
from console.pages._common import items, panel
from console.web import User, UserDep, gateway_of, page_router, redirect, render

router = page_router()
ROLES = ["admin", "staff", "member", "partner"]


async def _page(request: Request, user: User, status: int = 200, **extra: Any) -> Response:
    gateway = gateway_of(request)
    users, keys = await asyncio.gather(
        panel(gateway.get("/auth/users", user.token, params={"limit": 200})),
        panel(gateway.get("/auth/api-keys", user.token, params={"limit": 200, "include_revoked": "true"})),
    )
    context = {
        "users": items(users.data) if users.ok else [],
        "keys": items(keys.data) if keys.ok else [],
        "roles": ROLES,
        "errors": {},
        "general": "",
        "values": {},
        "section": None,
        **extra,
    }
    return render(request, "admin/index.html", context, status=status)


@router.get("/admin")
async def index(request: Request, user: UserDep) -> Response:
    return await _page(request, user)


@router.post("/admin/users")
async def create_user(request: Request, user: UserDep) -> Response:
    form = await request.form()
    body: dict[str, Any] = {
        "email": str(form.get("email", "")).strip(),
        "password": str(form.get("password", "")),
        "role": str(form.get("role", "")),
    }
    if str(form.get("organisation_id", "")).strip():
        body["organisation_id"] = str(form.get("organisation_id")).strip()
    try:
        await gateway_of(request).post("/auth/users", user.token, json=body)
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        values = {k: v for k, v in body.items() if k != "password"}
        return await _page(request, user, 422, section="user", errors=errors, general=general, values=values)
    return redirect(request, "/admin?created=user")


@router.post("/admin/users/{user_id}")
async def update_user(request: Request, user_id: str, user: UserDep) -> Response:
    form = await request.form()
    body: dict[str, Any] = {}
    if form.get("role") in ROLES:
        body["role"] = form.get("role")
    if form.get("active") in ("true", "false"):
        body["active"] = form.get("active") == "true"
    try:
        await gateway_of(request).call("PATCH", f"/auth/users/{user_id}", user.token, json=body)
    except client.Invalid as exc:
        return await _page(request, user, 422, section="users", general=exc.message)
    return redirect(request, "/admin")


@router.post("/admin/api-keys")
async def create_key(request: Request, user: UserDep) -> Response:
    form = await request.form()
    body: dict[str, Any] = {"name": str(form.get("name", "")).strip(), "role": str(form.get("role", "partner"))}
    for optional in ("organisation_id", "expires_at", "scopes"):
        value = str(form.get(optional, "")).strip()
        if value:
            body[optional] = domain.split_list(value) if optional == "scopes" else value
    try:
        issued = await gateway_of(request).post("/auth/api-keys", user.token, json=body)
    except client.Invalid as exc:
        errors, general = domain.field_errors(exc.body)
        shown = {**body, "scopes": ", ".join(body.get("scopes", []))}  # as typed, for the form
        return await _page(request, user, 422, section="key", errors=errors, general=general, values=shown)
    # the key is shown on this answer only; it is not kept anywhere by the console
    return await _page(request, user, 201, issued=issued)


@router.post("/admin/api-keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, user: UserDep) -> Response:
    await gateway_of(request).call("DELETE", f"/auth/api-keys/{key_id}", user.token)
    return redirect(request, "/admin")
