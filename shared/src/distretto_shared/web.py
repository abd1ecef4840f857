"""HTTP plumbing shared by every service: errors, pagination, request context and metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

import structlog
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from distretto_shared import metrics
from distretto_shared.logging import correlation_id_var, get_logger, traceparent_var

log = get_logger(__name__)

T = TypeVar("T")

# Identity forwarded by the gateway; services trust these and nothing else.
PRINCIPAL_HEADER = "x-distretto-principal"
ROLE_HEADER = "x-distretto-role"
CORRELATION_HEADER = "x-correlation-id"
REQUEST_ID_HEADER = "x-request-id"


class DomainError(Exception):
    """A use case refused: the route answers ``status`` with ``message``."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    """The thing asked for does not exist."""

    status = 404
    code = "not_found"


class Conflict(DomainError):
    """The request clashes with the current state (illegal transition, duplicate)."""

    status = 409
    code = "conflict"


class Invalid(DomainError):
    """The request is well-formed but its content is not acceptable."""

    status = 422
    code = "invalid"


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    """Pagination query parameters."""

    limit: int = 50
    offset: int = 0


def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="Page size (1–500)")] = 50,
    offset: Annotated[int, Query(ge=0, description="Items to skip")] = 0,
) -> PageParams:
    """Dependency for ``?limit=&offset=``."""
    return PageParams(limit=limit, offset=offset)


def make_page(items: Sequence[T], total: int, params: PageParams) -> Page[T]:
    """Build a :class:`Page`."""
    return Page[T](items=list(items), total=total, limit=params.limit, offset=params.offset)


def _loc(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors with a human sentence in ``message`` and the machine details beside it."""

    @app.exception_handler(DomainError)
    async def domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.code, "message": exc.message}
        if exc.details is not None:
            body["details"] = exc.details
        return JSONResponse(status_code=exc.status, content=body)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(f"{_loc(e.get('loc', ()))}: {e.get('msg')}" for e in errors)
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return JSONResponse(
            status_code=422, content={"error": "validation_error", "message": message, "detail": details}
        )


class RequestContextMiddleware:
    """Pure ASGI middleware: correlation id in and out, request metrics by route template."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope.get("headers", ())}
        cid = headers.get(CORRELATION_HEADER) or headers.get(REQUEST_ID_HEADER) or str(uuid.uuid4())
        cid = cid[:128]
        cid_token = correlation_id_var.set(cid)
        tp_token = traceparent_var.set(headers.get("traceparent"))
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (CORRELATION_HEADER.encode(), cid.encode())]
            await send(message)

        try:
            with structlog.contextvars.bound_contextvars(correlation_id=cid):
                await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            elapsed = time.perf_counter() - start
            metrics.HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
            metrics.HTTP_LATENCY.labels(self.service, method, template).observe(elapsed)
            log_access(method, template, status, elapsed, principal_id(scope, headers), cid)
            correlation_id_var.reset(cid_token)
            traceparent_var.reset(tp_token)


_access = get_logger("distretto.access")


def principal_id(scope: Scope, headers: dict[str, str] | None = None) -> str | None:
    """The caller's principal id, if known: the verified principal, else the gateway's header."""
    found = (scope.get("state") or {}).get("principal")
    if found is not None:
        return str(getattr(found, "id", None) or getattr(found, "subject", None) or "") or None
    if headers is not None:
        return headers.get(PRINCIPAL_HEADER)
    return None


def log_access(
    method: str, route: str, status: int, elapsed: float, principal: str | None, correlation_id: str | None
) -> None:
    """One access line per request: no path values, query strings or bodies (they may hold personal data)."""
    _access.info(
        "request",
        method=method,
        route=route,
        status=status,
        duration_ms=round(elapsed * 1000, 2),
        principal=principal,
        correlation_id=correlation_id,
    )


class Principal(BaseModel):
    """Who is calling, as the gateway says."""

    subject: str | None = None
    role: str | None = None


def principal(request: Request) -> Principal:
    """Dependency: the identity the gateway forwarded (anonymous when absent)."""
    return Principal(subject=request.headers.get(PRINCIPAL_HEADER), role=request.headers.get(ROLE_HEADER))
