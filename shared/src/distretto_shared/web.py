"""HTTP plumbing shared by every service: errors, pagination, request context and metrics."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

import structlog
from fastapi import Depends, Query, Request
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from distretto_shared import metrics, tracing
from distretto_shared.conventions import MAX_LIMIT, MAX_OFFSET, error_content
from distretto_shared.identity import InvalidCredential, Principal, Role, Verifier
from distretto_shared.logging import correlation_id_var, get_logger, traceparent_var

log = get_logger(__name__)

T = TypeVar("T")

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


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (1–{MAX_LIMIT})")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description=f"Items to skip (0–{MAX_OFFSET})")] = 0,
) -> PageParams:
    """Dependency for ``?limit=&offset=``."""
    return PageParams(limit=limit, offset=offset)


Paging = Annotated[PageParams, Depends(page_params)]
"""A list route's ``?limit=&offset=`` parameter: ``async def list_x(ctx: Ctx, page: Paging)``."""


def make_page(items: Sequence[T], total: int, params: PageParams) -> Page[T]:
    """Build a :class:`Page`."""
    return Page[T](items=list(items), total=total, limit=params.limit, offset=params.offset)


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

        method = scope.get("method", "GET")
        span_cm = tracing.span(f"{method} request", tracing.SERVER, headers.get("traceparent"))
        span = span_cm.__enter__()
        if span is not None:  # what this request writes to its outbox continues the trace from here
            traceparent_var.set(tracing.traceparent_of(span))
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send_wrapper(message)

        try:
            with structlog.contextvars.bound_contextvars(correlation_id=cid):
                try:
                    await self.app(scope, receive, tracking_send)
                except Exception as exc:
                    # a bug: logged with its traceback, answered in the one error shape (never its text)
                    log.error("unhandled error", error=repr(exc), exc_info=exc)
                    if started:
                        raise
                    await send_error(
                        send_wrapper, 500, "internal_error", "Internal error: the request was not completed"
                    )
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            metrics.HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
            metrics.HTTP_LATENCY.labels(self.service, method, template).observe(elapsed)
            log_access(method, template, status, elapsed, principal_id(scope, headers), cid)
            if span is not None:
                span.update_name(f"{method} {template}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("distretto.service", self.service)
                tracing.mark_error(span, status)
            span_cm.__exit__(None, None, None)
            correlation_id_var.reset(cid_token)
            traceparent_var.reset(tp_token)


_access = get_logger("distretto.access")


def principal_id(scope: Scope, headers: dict[str, str] | None = None) -> str | None:
    """The verified caller's principal id, if the request got that far."""
    found = (scope.get("state") or {}).get("principal")
    if found is not None:
        return str(getattr(found, "id", None) or getattr(found, "subject", None) or "") or None
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


async def send_error(
    send: Send, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON error answered by a middleware, before any route runs."""
    body = json.dumps(error_content(status, message, code=code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for request bodies over ``max_bytes``: by Content-Length before reading, and while a
    chunked body streams in (the route never sees more than the limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    await send_error(send, 400, "bad_request", "Content-Length is not a number")
                    return
                if declared > self.max_bytes:
                    await send_error(send, 413, "payload_too_large", self._message())
                    return
        received = 0
        started = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now and tell the route the caller left: whatever it answers is dropped.
                    refused = True
                    if not started:
                        await send_error(send, 413, "payload_too_large", self._message())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    def _message(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes"


class IdentityMiddleware:
    """Every request carries a credential this service verifies itself, or gets 401 before any route runs.

    The credential (``X-Distretto-Identity``) is minted by the gateway for the caller it
    authenticated — anonymous callers of public routes included — or by another service
    calling as itself. ``/healthz`` and ``/readyz`` are exempt (probes); ``/metrics``
    checks its caller itself (:func:`metrics_allowed`).
    """

    EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, app: ASGIApp, verifier: Verifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = None
        for k, v in scope.get("headers", ()):
            if k == b"x-distretto-identity":
                token = v.decode("latin-1")
                break
        principal: Principal | None = None
        if token is not None:
            try:
                principal = self.verifier.verify(token)
            except InvalidCredential as exc:
                if scope.get("path") not in self.EXEMPT:
                    log.info("credential refused", reason=str(exc), path=scope.get("path"))
                    await send_error(
                        send, 401, "unauthorized", f"Refused: {exc}", [(b"www-authenticate", b"Distretto")]
                    )
                    return
        elif scope.get("path") not in self.EXEMPT:
            await send_error(
                send,
                401,
                "unauthorized",
                "This service answers only requests with a credential (X-Distretto-Identity): "
                "call it through the gateway",
                [(b"www-authenticate", b"Distretto")],
            )
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def current_principal(request: Request) -> Principal:
    """Dependency: the verified caller (401 when there is none)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthorized("No verified caller for this request")
    return principal


class Unauthorized(DomainError):
    """No valid credential."""

    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"


def address_allowed(client: str | None, allowed: list[str]) -> bool:
    """True when ``client`` is one of ``allowed`` (addresses or networks such as ``10.0.0.0/24``)."""
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def metrics_allowed(request: Request, allowed_addresses: list[str]) -> bool:
    """``/metrics``: the configured scrape addresses, or an operator/admin principal."""
    if address_allowed(request.client.host if request.client else None, allowed_addresses):
        return True
    principal = getattr(request.state, "principal", None)
    return principal is not None and principal.role in (Role.OPERATOR, Role.ADMIN)
