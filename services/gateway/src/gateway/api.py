"""The gateway's own routes: tokens, users, API keys, health, the aggregated OpenAPI document.

Who may call each route is decided by the policy table (``domain.POLICY``) in
the middleware before a request gets here; routes read the verified identity.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from distretto_shared.context import Context
from distretto_shared.conventions import HexId
from distretto_shared.identity import ANONYMOUS
from distretto_shared.web import NotFound, Page, Paging
from gateway import openapi, service
from gateway.config import Settings
from gateway.domain import Role
from gateway.identify import Unauthorized
from gateway.models import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyPublic,
    Identity,
    PasswordChange,
    TokenRequest,
    TokenResponse,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from gateway.runtime import Gateway

router = APIRouter()


def gateway_context(request: Request) -> Context[Settings]:
    """The context of the gateway's own routes: the caller its middleware verified (anonymous on
    the public ones), the gateway's database and settings, and its singletons (the ``Gateway``)."""
    identity = request.scope.get("state", {}).get("identity")
    principal = identity.as_principal if isinstance(identity, Identity) else ANONYMOUS
    service_ctx = request.app.state.ctx
    return Context(principal=principal, db=service_ctx.db, settings=service_ctx.settings, service=service_ctx)


Ctx = Annotated[Context[Settings], Depends(gateway_context)]


def gateway_of(ctx: Ctx) -> Gateway:
    """Dependency: the running gateway (a singleton of the context)."""
    return ctx.get(Gateway)


def identity_of(request: Request) -> Identity:
    """Dependency: the caller, as verified by the middleware (these routes are never public)."""
    identity = request.scope.get("state", {}).get("identity")
    if identity is None:
        raise Unauthorized("Authentication required")
    assert isinstance(identity, Identity)
    return identity


GatewayDep = Annotated[Gateway, Depends(gateway_of)]
IdentityDep = Annotated[Identity, Depends(identity_of)]


def _db(gw: Gateway) -> Any:
    assert gw.db is not None
    return gw.db


@router.post("/auth/token", tags=["auth"], summary="Log in: a bearer token for email and password")
async def token(body: TokenRequest, gw: GatewayDep) -> TokenResponse:
    return await service.login(_db(gw), gw.passwords, gw.auth, body.email, body.password)


@router.post("/auth/refresh", tags=["auth"], summary="A fresh token while my session is current")
async def refresh(identity: IdentityDep, gw: GatewayDep) -> TokenResponse:
    return await service.refresh_token(_db(gw), gw.auth, identity)


@router.get("/auth/me", tags=["auth"], summary="Who the gateway says I am")
async def me(identity: IdentityDep) -> Identity:
    return identity


@router.post("/auth/password", tags=["auth"], summary="Change my own password", status_code=204)
async def change_password(body: PasswordChange, identity: IdentityDep, gw: GatewayDep) -> None:
    if not identity.principal.startswith("user:"):
        raise Unauthorized("Only a user logged in with a token has a password")
    await service.change_password(
        _db(gw),
        gw.passwords,
        identity.principal.removeprefix("user:"),
        body.current_password,
        body.new_password,
        gw.auth.sessions,
    )


@router.post("/auth/users", tags=["auth"], summary="Create a user account", status_code=201)
async def create_user(body: UserCreate, gw: GatewayDep) -> UserPublic:
    return await service.create_user(_db(gw), gw.passwords, body)


@router.get("/auth/users", tags=["auth"], summary="List user accounts")
async def list_users(
    gw: GatewayDep,
    params: Paging,
    role: Annotated[Role | None, Query(description="Only users with this role")] = None,
) -> Page[UserPublic]:
    return await service.list_users(_db(gw), params, role)


@router.get("/auth/users/{user_id}", tags=["auth"], summary="One user account")
async def get_user(user_id: HexId, gw: GatewayDep) -> UserPublic:
    return await service.get_user(_db(gw), user_id)


@router.patch("/auth/users/{user_id}", tags=["auth"], summary="Change a user's role, password or status")
async def update_user(user_id: HexId, body: UserUpdate, gw: GatewayDep) -> UserPublic:
    return await service.update_user(_db(gw), gw.passwords, user_id, body, gw.auth.sessions)


@router.post("/auth/api-keys", tags=["auth"], summary="Issue an API key (shown once)", status_code=201)
async def create_api_key(body: ApiKeyCreate, identity: IdentityDep, gw: GatewayDep) -> ApiKeyIssued:
    return await service.create_api_key(
        _db(gw), body, identity.email or identity.principal, gw.settings.api_key_max_days
    )


@router.get("/auth/api-keys", tags=["auth"], summary="List API keys")
async def list_api_keys(
    gw: GatewayDep,
    params: Paging,
    include_revoked: Annotated[bool, Query(description="Also list revoked keys")] = False,
) -> Page[ApiKeyPublic]:
    return await service.list_api_keys(_db(gw), params, include_revoked)


@router.delete("/auth/api-keys/{key_id}", tags=["auth"], summary="Revoke an API key")
async def revoke_api_key(key_id: HexId, gw: GatewayDep) -> ApiKeyPublic:
    key = await service.revoke_api_key(_db(gw), key_id)
    gw.auth.forget_api_key(key_id)
    return key


async def _check_upstreams(gw: Gateway, probe: str) -> dict[str, dict[str, Any]]:
    """Each service's ``probe`` answer; shared by every caller for ``readiness_cache_seconds``
    (so a flood of probes is not multiplied onto the services)."""
    now = time.monotonic()
    cached = gw.probe_cache.get(probe)
    if cached is not None and cached[0] > now:
        return await asyncio.shield(cached[1])
    task = asyncio.ensure_future(_ask_upstreams(gw, probe))
    gw.probe_cache[probe] = (now + gw.settings.readiness_cache_seconds, task)
    return await asyncio.shield(task)


async def _ask_upstreams(gw: Gateway, probe: str) -> dict[str, dict[str, Any]]:
    timeout = gw.settings.upstream_check_timeout

    async def one(name: str, base: str) -> tuple[str, dict[str, Any]]:
        try:
            response = await gw.client.get(base + probe, timeout=timeout, headers=gw.own_headers(name))
        except httpx.ConnectError:
            return name, {"ok": False, "url": base, "error": "connection refused"}
        except httpx.TimeoutException:
            return name, {"ok": False, "url": base, "error": f"no answer within {timeout:g} s"}
        except httpx.HTTPError as exc:
            return name, {"ok": False, "url": base, "error": repr(exc)}
        try:
            detail: Any = response.json()
        except ValueError:
            detail = response.text[:200]
        return name, {"ok": response.status_code == 200, "url": base, "status": response.status_code, "detail": detail}

    results = await asyncio.gather(*(one(n, b) for n, b in gw.upstreams.items()))
    return dict(results)


def _sees_details(request: Request) -> bool:
    """Operators and admins see where the services are and why one is not ready; others only ok/not ok."""
    identity = request.scope.get("state", {}).get("identity")
    return isinstance(identity, Identity) and identity.role in (Role.ADMIN, Role.OPERATOR)


def _shown(upstreams: dict[str, dict[str, Any]], details: bool) -> dict[str, dict[str, Any]]:
    if details:
        return upstreams
    return {name: {"ok": u["ok"]} for name, u in upstreams.items()}


@router.get("/healthz", tags=["operations"], summary="Gateway alive; each service's /healthz")
async def healthz(request: Request, gw: GatewayDep) -> dict[str, Any]:
    upstreams = _shown(await _check_upstreams(gw, "/healthz"), _sees_details(request))
    return {"status": "ok", "service": "gateway", "upstreams": upstreams}


@router.get("/readyz", tags=["operations"], summary="Gateway database and each service's /readyz")
async def readyz(request: Request, gw: GatewayDep) -> JSONResponse:
    """Ready or not, for everyone; the services' addresses and errors only for operators and admins."""
    details = _sees_details(request)
    upstreams_task = asyncio.create_task(_check_upstreams(gw, "/readyz"))
    try:
        await asyncio.wait_for(_db(gw).ping(), timeout=gw.settings.upstream_check_timeout)
        database: dict[str, Any] = {"ok": True}
    except Exception as exc:
        database = {"ok": False, "error": repr(exc)} if details else {"ok": False}
    upstreams = await upstreams_task
    ready = database["ok"] and (not gw.settings.readyz_requires_upstreams or all(u["ok"] for u in upstreams.values()))
    return JSONResponse(
        status_code=200 if ready else 503,
        content={
            "status": "ready" if ready else "not ready",
            "service": "gateway",
            "checks": {"database": database, "upstreams": _shown(upstreams, details)},
        },
    )


@router.get("/openapi.json", tags=["operations"], summary="The platform's OpenAPI document", include_in_schema=False)
async def openapi_document(request: Request, gw: GatewayDep) -> JSONResponse:
    now = time.monotonic()
    if gw.openapi_cache is not None and gw.openapi_cache[0] > now:
        return JSONResponse(gw.openapi_cache[1])
    docs, failures = await openapi.fetch_documents(
        gw.client, gw.upstreams, gw.settings.upstream_check_timeout, gw.own_headers
    )
    doc = openapi.merge(request.app.openapi(), docs, failures, gw.policy)
    # a missing service is asked again soon; a complete document is kept longer
    gw.openapi_cache = (now + (5.0 if failures else gw.settings.openapi_cache_seconds), doc)
    return JSONResponse(doc)


# Swagger UI's files are served from the package (swagger-ui-dist, with its licence), not a CDN:
# the API page works on a machine without internet access.
SWAGGER_UI = Path(__file__).resolve().parent / "static" / "swagger-ui"
_SWAGGER_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain",
    "NOTICE": "text/plain",
}


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Distretto API",
        swagger_js_url="/docs/static/swagger-ui-bundle.js",
        swagger_css_url="/docs/static/swagger-ui.css",
        swagger_favicon_url="/docs/static/favicon-32x32.png",
    )


@router.get("/docs/static/{asset}", include_in_schema=False)
async def docs_asset(asset: str) -> FileResponse:
    media_type = _SWAGGER_ASSETS.get(asset)
    if media_type is None:
        raise NotFound(f"No such file: {asset}")
    return FileResponse(SWAGGER_UI / asset, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
