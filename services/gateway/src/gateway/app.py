"""Assembly of the gateway: the backbone's app plus the gateway middleware in front of it.

Two things the backbone's ``create_app``/``cli`` do not offer, done here:
the pure-ASGI :class:`~gateway.proxy.GatewayMiddleware` (and CORS) in front of
the app, and ``serve --workers N`` on uvloop + httptools.

The middleware sits *outside* the FastAPI app (:class:`GatewayApp`), not in its
middleware stack: a proxied request never pays for FastAPI's per-request work
(its telemetry checks, Starlette's error middleware); the gateway's own routes
and the lifespan go through FastAPI as usual.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from distretto_shared.app import ConfigurationError, Serve, ServiceContext, ServiceSpec, cli
from distretto_shared.app import create_app as _create
from distretto_shared.conventions import document_errors
from distretto_shared.migrations import upgrade_async
from distretto_shared.web import BodyLimitMiddleware
from gateway import api, service
from gateway.config import Settings
from gateway.proxy import GatewayMiddleware
from gateway.runtime import Gateway

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

SPEC = ServiceSpec(
    name="gateway",
    settings_cls=Settings,
    routers=[api.router],
    migrations=MIGRATIONS,
    title="Distretto gateway",
    authenticate=False,  # it authenticates people and partner systems itself
    description="The single entrance: authentication, roles, rate limits, routing to the services.",
)

# FastAPI's own document and UI are replaced by the aggregated ones in api.py, the backbone's
# health routes by ones that also report each service.
_REPLACED = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/healthz", "/readyz"}


class BodyLimited:
    """The body limit at the gateway's pace: a request with a Content-Length within the limit (or
    none and no chunked body) goes straight on — the HTTP server never hands over more than it
    declared — and only a chunked body is counted as it streams (:class:`BodyLimitMiddleware`)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.limited = BodyLimitMiddleware(app, max_bytes=max_bytes)
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for k, v in scope["headers"]:
            if k == b"content-length":
                if v.isdigit() and int(v) <= self.max_bytes:
                    await self.app(scope, receive, send)
                    return
                break
            if k == b"transfer-encoding":
                break
        else:
            await self.app(scope, receive, send)  # no body
            return
        await self.limited(scope, receive, send)  # too large, malformed, or chunked


class GatewayApp:
    """The ASGI entry point: HTTP requests go through the gateway middleware, the rest to FastAPI."""

    def __init__(self, app: FastAPI, gateway: Gateway, cors_origins: list[str], max_body_bytes: int) -> None:
        self.fastapi = app
        self.gateway = gateway
        # 413 for an oversized body before anything reads it (Content-Length), or as soon as a
        # chunked one streams past the limit: for the proxied requests and the gateway's own alike.
        handler: ASGIApp = BodyLimited(GatewayMiddleware(app, gateway), max_bytes=max_body_bytes)
        if cors_origins:
            # outermost, so a browser's preflight is answered before authentication
            handler = CORSMiddleware(
                handler,
                allow_origins=cors_origins,
                allow_methods=["*"],
                allow_headers=["*"],
                allow_credentials=True,
                expose_headers=["X-Request-ID", "X-Correlation-ID", "Retry-After"],
                max_age=600,
            )
        self.http = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.fastapi(scope, receive, send)


def create_app(settings: Settings | None = None) -> GatewayApp:
    """The gateway's ASGI app (identity, policy, rate limits and proxy in front of the backbone's app)."""
    settings = settings or Settings()
    if not settings.signing_key:
        raise ConfigurationError(
            "gateway refuses to start: GATEWAY_SIGNING_KEY is not set, so it could sign no token and vouch for no "
            "caller (`make up` generates it; see the README's Security section)"
        )
    gateway = Gateway(settings)

    async def start(ctx: ServiceContext) -> None:
        if ctx.identity is None:
            raise ConfigurationError(
                "gateway refuses to start: GATEWAY_SIGNING_KEY is not set, so it could vouch for no caller "
                "(`make up` generates it; see the README's Security section)"
            )
        await gateway.start(ctx.db, ctx.identity)
        ctx.provide(gateway)
        await service.ensure_admin(ctx.db, gateway.passwords, settings.admin_email, settings.admin_password)

    async def stop(_ctx: ServiceContext) -> None:
        await gateway.stop()

    spec = dataclasses.replace(SPEC, on_startup=[start], on_shutdown=[stop])
    app = _create(spec, settings)
    mine = {api.openapi_document, api.docs, api.docs_asset, api.healthz, api.readyz}
    app.router.routes = [
        r
        for r in app.router.routes
        if getattr(r, "path", None) not in _REPLACED or getattr(r, "endpoint", None) in mine
    ]
    # its own routes check the caller themselves (the backbone's app is told not to): 401/403 documented
    # on every one (a credential that is no longer valid is refused on the public routes too)
    document_errors(app, authenticated=True)
    return GatewayApp(app, gateway, settings.cors_origins, settings.max_body_bytes)


def _workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (default GATEWAY_WORKERS or 1)")


def _run_workers(_app: object, settings: Settings, args: argparse.Namespace, options: dict[str, Any]) -> bool:
    """Several worker processes: migrate once here, not in N workers racing on the same database."""
    workers = getattr(args, "workers", None) or settings.workers
    if workers <= 1:
        return False  # the app already built (every setting checked) runs in this process
    import uvicorn

    asyncio.run(upgrade_async(MIGRATIONS, settings.resolved_database_url(), settings.database_schema))
    uvicorn.run("gateway.app:create_app", factory=True, workers=workers, **options)
    return True


main = cli(
    SPEC,
    Serve(
        create=create_app,  # every setting checked here, before a worker starts
        uvicorn_options={
            "loop": "uvloop",
            "http": "httptools",
            "proxy_headers": False,  # X-Forwarded-For is the gateway's call (GATEWAY_TRUST_FORWARDED_FOR)
        },
        arguments=_workers_argument,
        run=_run_workers,
    ),
)
"""``python -m gateway [serve [--host H] [--port P] [--workers N] | migrate | asyncapi]``."""
