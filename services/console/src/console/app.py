"""Assembly of the console: the backbone's app (database, consumers, metrics, health) plus pages and files."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from itsdangerous import URLSafeTimedSerializer
from starlette.exceptions import HTTPException as StarletteHTTPException

from console import client, consumers, service, web
from console.config import Settings
from console.pages import ROUTERS
from distretto_shared.app import PeriodicJob, Serve, ServiceContext, ServiceSpec, cli
from distretto_shared.app import create_app as _create
from distretto_shared.context import Context
from distretto_shared.logging import get_logger

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
log = get_logger(__name__)


async def _purge(ctx: Context[Settings]) -> None:
    await web.purge_sessions(ctx)
    await service.trim_activity(ctx.db, ctx.settings.activity_keep)


SPEC = ServiceSpec(
    name="console",
    settings_cls=Settings,
    routers=ROUTERS,
    migrations=MIGRATIONS,
    consumers=[consumers.consumers],
    periodic=[PeriodicJob("purge", 300.0, _purge)],
    reads_dead_letters=True,
    title="Distretto console",
    description="The web application of Distretto for staff, members and the public, through the gateway.",
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The console's ASGI app."""
    settings = settings or Settings()

    async def start(ctx: ServiceContext) -> None:
        ctx.provide(client.Gateway(settings.gateway_url, settings.gateway_timeout))
        secret = settings.csrf_secret or secrets.token_urlsafe(32)
        ctx.provide(URLSafeTimedSerializer(secret, salt="console-csrf"))

    async def stop(ctx: ServiceContext) -> None:
        gateway = ctx.singletons.get(client.Gateway)
        if gateway is not None:
            await gateway.close()

    spec = dataclasses.replace(SPEC, on_startup=[start], on_shutdown=[stop])
    app = _create(spec, settings)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    _install_error_pages(app)
    return app


def _install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(web.LoginRequired)
    async def login_required(request: Request, _exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return web.redirect(request, "/login?next=" + _quote(target))

    @app.exception_handler(client.SessionExpired)
    async def expired(request: Request, _exc: Exception) -> Response:
        await web.end_session(request)
        response = web.redirect(request, "/login?expired=1")
        response.delete_cookie(web.SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(web.CsrfFailed)
    async def csrf_failed(request: Request, _exc: Exception) -> Response:
        return web.render(request, "error.html", {"code": 400, "kind": "csrf"}, status=400)

    @app.exception_handler(web.PageForbidden)
    async def page_forbidden(request: Request, _exc: Exception) -> Response:
        await web.optional_user(request)
        return web.render(request, "error.html", {"code": 403, "kind": "forbidden"}, status=403)

    @app.exception_handler(client.Forbidden)
    async def forbidden(request: Request, exc: client.GatewayError) -> Response:
        await web.optional_user(request)
        return web.render(request, "error.html", {"code": 403, "kind": "forbidden", "detail": exc.message}, 403)

    @app.exception_handler(client.NotFound)
    async def not_found(request: Request, exc: client.GatewayError) -> Response:
        await web.optional_user(request)
        return web.render(request, "error.html", {"code": 404, "kind": "not_found", "detail": exc.message}, 404)

    @app.exception_handler(client.ServiceDown)
    async def down(request: Request, exc: client.GatewayError) -> Response:
        await web.optional_user(request)
        log.warning("service down", service=exc.service, status=exc.status, message=exc.message)
        return web.render(request, "error.html", {"code": 503, "kind": "down", "service": exc.service}, 503)

    @app.exception_handler(client.Invalid)
    async def invalid(request: Request, exc: client.GatewayError) -> Response:
        await web.optional_user(request)
        return web.render(request, "error.html", {"code": 400, "kind": "invalid", "detail": exc.message}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        await web.optional_user(request)
        if exc.status_code == 404:
            return web.render(request, "error.html", {"code": 404, "kind": "not_found"}, 404)
        return web.render(request, "error.html", {"code": exc.status_code, "kind": "other"}, exc.status_code)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


main = cli(
    SPEC,
    # the gateway is in front; X-Forwarded-Proto is read where it matters
    Serve(create=create_app, uvicorn_options={"proxy_headers": False}),
)
"""``python -m console [serve [--host H] [--port P] | migrate | asyncapi]``."""
