"""The request path: identity, rate limit, policy, then the reverse proxy or the gateway's own routes.

Pure ASGI (no BaseHTTPMiddleware): a proxied request never enters FastAPI's
routing; bodies stream both ways through :mod:`gateway.upstream`'s keep-alive
pools (httpx serves only the cold paths: OpenAPI aggregation and health checks).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any
from urllib.parse import quote

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from distretto_shared import metrics, tracing
from distretto_shared.conventions import error_content
from distretto_shared.identity import ANONYMOUS
from distretto_shared.logging import get_logger
from distretto_shared.web import address_allowed, log_access
from gateway.domain import (
    ALLOWED,
    CONSOLE,
    GATEWAY,
    Decision,
    decide,
    is_console_path,
    retry_after_header,
    split_upstream,
)
from gateway.identify import Unauthorized
from gateway.models import Identity
from gateway.runtime import UPSTREAM_ERRORS, Gateway
from gateway.upstream import (
    ClientGone,
    ConnectRefused,
    ConnectTimeout,
    PoolTimeout,
    ReadTimeout,
    UpstreamClosed,
    UpstreamError,
    WriteTimeout,
)

log = get_logger(__name__)

REQUESTS = Counter(
    "distretto_gateway_requests_total",
    "Requests through the gateway by policy route, upstream and status",
    ["route", "upstream", "method", "status"],
)
LATENCY = Histogram(
    "distretto_gateway_request_duration_seconds",
    "Time from request to the end of the response, by policy route and upstream",
    ["route", "upstream"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RATE_LIMITED = Counter("distretto_gateway_rate_limited_total", "Requests refused with 429", ["bucket"])
DENIED = Counter("distretto_gateway_denied_total", "Requests refused by authentication or policy", ["status"])
# At zero from the first scrape (an alert's increase() then sees the first 429 or 401).
metrics.zero(RATE_LIMITED, ("login", "principal", "anonymous"))
metrics.zero(DENIED, ("401", "403"))

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# uvicorn adds its own Date and Server to every answer; the upstream's would be doubled.
RESPONSE_DROPPED = HOP_BY_HOP | {b"date", b"server"}
# ... and a proxied answer carries the gateway's ids, not the service's own.
PROXIED_RESPONSE_DROPPED = RESPONSE_DROPPED | {b"x-request-id", b"x-correlation-id"}
# Never forwarded upstream: hop-by-hop, credentials (the services get the verified identity instead),
# any identity or forwarding header a caller might forge, and the ids the gateway sets itself.
IDENTITY_HEADERS = (
    b"x-distretto-identity",
    b"x-distretto-principal",
    b"x-distretto-role",
    b"x-distretto-organisation",
    b"x-distretto-via",
)
STRIPPED_REQUEST = HOP_BY_HOP | {
    b"host",
    b"authorization",
    b"x-api-key",
    *IDENTITY_HEADERS,
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"x-correlation-id",
    # uvicorn answers the caller's 100-continue itself when the body is read
    b"expect",
}
# A chunked request is re-chunked to the service; a Content-Length beside it would contradict that.
STRIPPED_REQUEST_CHUNKED = STRIPPED_REQUEST | {b"content-length"}
# With tracing on, the upstream gets the gateway's own span as its parent instead of the caller's.
TRACED_REQUEST = STRIPPED_REQUEST | {b"traceparent"}
TRACED_REQUEST_CHUNKED = STRIPPED_REQUEST_CHUNKED | {b"traceparent"}


_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


def new_request_id() -> str:
    """A fresh request id: 32 hex digits, a random per-process prefix and a counter (unique, and cheap)."""
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def _safe_id(value: str | None) -> str | None:
    """An incoming id, kept only when short and printable (it goes into logs and headers)."""
    if not value:
        return None
    value = value.strip()[:128]
    return value if value.isascii() and value.isprintable() and value else None


async def send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    """A JSON answer from the gateway itself."""
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class GatewayMiddleware:
    """Every request: ids → identity → rate limit → policy → proxy (``/api/…``) or the gateway's routes."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    def _observe(self, route: str, upstream: str, method: str, status: int, elapsed: float) -> None:
        key = (route, upstream, method, status)
        children = self._children.get(key)
        if children is None:
            children = (REQUESTS.labels(route, upstream, method, str(status)), LATENCY.labels(route, upstream))
            if len(self._children) < 10_000:  # bounded: methods and statuses are few, routes are the table's
                self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        gw = self.gateway
        method: str = scope["method"]
        path: str = scope["path"]
        authorization = api_key = rid = cid = forwarded_for = traceparent = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                authorization = v.decode("latin-1")
            elif k == b"x-api-key":
                api_key = v.decode("latin-1")
            elif k == b"x-request-id":
                rid = v.decode("latin-1")
            elif k == b"x-correlation-id":
                cid = v.decode("latin-1")
            elif k == b"x-forwarded-for":
                forwarded_for = v.decode("latin-1")
            elif k == b"traceparent":
                traceparent = v.decode("latin-1")
        request_id = (_safe_id(rid) if rid else None) or new_request_id()
        correlation_id = (_safe_id(cid) if cid else None) or request_id
        client = scope["client"][0] if scope.get("client") else "unknown"
        if forwarded_for and gw.settings.trust_forwarded_for:
            client = forwarded_for.split(",")[0].strip() or client
        id_headers = [(b"x-request-id", request_id.encode()), (b"x-correlation-id", correlation_id.encode())]

        rule = gw.policy.match("GET" if method == "HEAD" else method, path)
        target = split_upstream(path)
        if target is None and is_console_path(path):  # --- the console's pages
            target = (CONSOLE, path)
        route = rule.pattern if rule else "unmatched"
        upstream = rule.upstream if rule else (target[0] if target else GATEWAY)
        status = 500
        identity: Identity | None = None
        own = False  # the gateway's own routes: the backbone's middleware writes their access line

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *(h for h in message.get("headers", ()) if h[0] not in (b"x-request-id", b"x-correlation-id")),
                    *id_headers,
                ]
            await send(message)

        try:
            auth_error: str | None = None
            try:
                if authorization:  # the common case, without a coroutine
                    found = gw.auth.identify_bearer(authorization)
                    if isinstance(found, str):  # an API key as the bearer
                        identity = await gw.auth.verify_api_key(found)
                    else:
                        identity = found
                        if gw.auth.session_state(found) is not True:  # ended, or not seen yet by this worker
                            await gw.auth.check_session(found)
                elif api_key is not None:
                    identity = await gw.auth.verify_api_key(api_key.strip())
            except Unauthorized as exc:
                auth_error = exc.message
            if gw.settings.rate_limit_enabled:
                wait, bucket = gw.rate_limit(identity, client, method, path)
                if wait:
                    RATE_LIMITED.labels(bucket).inc()
                    await send_json(
                        send_wrapper,
                        429,
                        error_content(
                            429, f"Too many requests; retry in {retry_after_header(wait)} s", code="rate_limited"
                        ),
                        [(b"retry-after", retry_after_header(wait).encode())],
                    )
                    return
            if auth_error is not None:
                DENIED.labels("401").inc()
                await send_json(
                    send_wrapper,
                    401,
                    error_content(401, auth_error),
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            if rule is None:  # no such route (404), or not with this method (405 with the Allow header)
                allow = gw.policy.allowed(path)
                if not allow:
                    await send_json(send_wrapper, 404, error_content(404, f"No route {path}"), [])
                    return
                allow_header = [(b"allow", ", ".join(allow).encode())]
                if method == "OPTIONS":
                    status = 204
                    await send_wrapper({"type": "http.response.start", "status": 204, "headers": allow_header})
                    await send_wrapper({"type": "http.response.body", "body": b""})
                    return
                message = f"{method} is not allowed here; allowed: {', '.join(allow)}"
                await send_json(send_wrapper, 405, error_content(405, message), allow_header)
                return
            decision = decide(rule, identity.role if identity else None, method, path)
            if (
                decision.status
                and path == "/metrics"
                and address_allowed(client, gw.settings.metrics_allowed_addresses)
            ):
                decision = ALLOWED  # the configured scrape addresses read metrics without credentials
            elif not decision.status and identity is not None and not identity.in_scope(method, path):
                decision = Decision(403, f"The API key's scopes do not include {method} {path}")
            if decision.status:
                DENIED.labels(str(decision.status)).inc()
                error = "unauthorized" if decision.status == 401 else "forbidden"
                extra = [(b"www-authenticate", b"Bearer")] if decision.status == 401 else []
                await send_json(
                    send_wrapper, decision.status, error_content(decision.status, decision.message, code=error), extra
                )
                return
            if target is not None and tracing.state.enabled:
                # The gateway's own SERVER span, child of the caller's traceparent and parent of the upstream call.
                with tracing.span(
                    f"{method} {route}",
                    tracing.SERVER,
                    traceparent,
                    **{"http.request.method": method, "http.route": route, "distretto.upstream": target[0]},
                ) as span:
                    assert span is not None
                    status = await self.forward(
                        scope, receive, send, target[0], identity, client, id_headers, tracing.traceparent_of(span)
                    )
                    span.set_attribute("http.response.status_code", status)
                    tracing.mark_error(span, status)
            elif target is not None:
                # straight to the server's send: forward() adds the ids itself and says which status went out
                status = await self.forward(scope, receive, send, target[0], identity, client, id_headers)
            else:
                scope.setdefault("state", {})["identity"] = identity
                own = True
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            self._observe(route, upstream, method, status, elapsed)
            if not own:
                log_access(method, route, status, elapsed, identity.principal if identity else None, correlation_id)

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: str,
        identity: Identity | None,
        client: str,
        id_headers: list[tuple[bytes, bytes]],
        traceparent: str | None = None,
    ) -> int:
        """Stream the request to ``service`` and its answer back; 502/504 in JSON when it fails.

        ``traceparent`` (tracing on): the gateway's span, sent instead of the caller's header.
        Returns the status sent to the caller (499 when the caller left before an answer).
        """
        gw = self.gateway
        settings = gw.settings
        upstream = gw.targets[service]
        # The raw path goes on as the caller wrote it (the service decodes it as the policy did);
        # only when the caller percent-encoded the /api/<service> prefix itself is it rebuilt.
        raw_path: bytes | None = scope.get("raw_path")
        api_prefix = upstream.api_prefix
        if (
            raw_path
            and raw_path.startswith(api_prefix)
            and raw_path[len(api_prefix) : len(api_prefix) + 1] in (b"", b"/")
        ):
            rest = raw_path[len(api_prefix) :]
        else:
            rest = quote(scope["path"][len(api_prefix) :]).encode()
        target = upstream.prefix + (rest or b"/")
        query: bytes = scope.get("query_string", b"")
        if query:
            target += b"?" + query
        method: str = scope["method"]

        # One pass over the caller's headers: copy what may go on, note what shapes the request.
        parts = [method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", upstream.host_header, b"\r\n"]
        has_body = chunked = False
        forwarded_for: bytes | None = None
        host: bytes | None = None
        connection: bytes | None = None
        stripped = STRIPPED_REQUEST if traceparent is None else TRACED_REQUEST
        for k, v in scope["headers"]:
            if k not in stripped and not k.startswith(b"x-distretto-"):  # no caller speaks for the gateway
                parts += (k, b": ", v, b"\r\n")
                if k == b"content-length":
                    has_body = v.strip() not in (b"", b"0")
            elif k == b"transfer-encoding":
                has_body = chunked = True
            elif k == b"host":
                host = v
            elif k == b"x-forwarded-for":
                forwarded_for = v
            elif k == b"connection":
                connection = v if connection is None else connection + b"," + v
        if chunked or (connection is not None and connection.strip().lower() not in (b"keep-alive", b"close")):
            # Rare: headers named in Connection are hop-by-hop too; a chunked body has no Content-Length.
            hop_listed = {t.strip().lower() for t in (connection or b"").split(b",")}
            if traceparent is None:
                dropped = STRIPPED_REQUEST_CHUNKED if chunked else STRIPPED_REQUEST
            else:
                dropped = TRACED_REQUEST_CHUNKED if chunked else TRACED_REQUEST
            del parts[6:]
            for k, v in scope["headers"]:
                if k not in dropped and k not in hop_listed and not k.startswith(b"x-distretto-"):
                    parts += (k, b": ", v, b"\r\n")
        xff = client.encode()
        if forwarded_for and settings.trust_forwarded_for:
            xff = forwarded_for + b", " + scope["client"][0].encode() if scope.get("client") else forwarded_for
        parts += (b"x-forwarded-for: ", xff, b"\r\nx-forwarded-proto: ", scope.get("scheme", "http").encode())
        if host:
            parts += (b"\r\nx-forwarded-host: ", host)
        for k, v in id_headers:
            parts += (b"\r\n", k, b": ", v)
        if traceparent is not None:
            parts += (b"\r\ntraceparent: ", traceparent.encode())
        # The verified caller, as a credential only this service accepts (anonymous callers too).
        credential = gw.signer.mint_cached(identity.as_principal if identity is not None else ANONYMOUS, service)
        parts += (b"\r\nx-distretto-identity: ", credential.encode())
        parts.append(b"\r\ntransfer-encoding: chunked\r\n\r\n" if chunked else b"\r\n\r\n")
        head = b"".join(parts)

        pool = upstream.pool
        retried = False
        while True:
            try:
                conn, reused = await pool.acquire()
            except UpstreamError as exc:
                return await self._fail_upstream(send, service, exc, id_headers)
            try:
                await conn.send_request(
                    head, receive if has_body else None, chunked, method == "HEAD", settings.write_timeout
                )
                status, raw_headers = await conn.read_head(settings.read_timeout)
            except ClientGone:
                conn.close()
                return 499
            except UpstreamError as exc:
                conn.close()
                # A kept-alive connection the service closed just as we reused it: safe to try once more
                # on a fresh one when nothing of the caller's body was consumed and no answer began.
                if reused and not has_body and not retried and not conn.got_data and isinstance(exc, UpstreamClosed):
                    retried = True
                    continue
                return await self._fail_upstream(send, service, exc, id_headers)
            except BaseException:
                conn.close()
                raise
            break

        try:
            out: list[tuple[bytes, bytes]] = []
            listed: set[bytes] | None = None
            for k, v in raw_headers:
                k = k.lower()
                if k == b"connection":
                    listed = {t.strip().lower() for t in v.split(b",")}
                elif k not in PROXIED_RESPONSE_DROPPED:
                    out.append((k, v))
            if listed:
                out = [h for h in out if h[0] not in listed]
            out += id_headers
            await send({"type": "http.response.start", "status": status, "headers": out})
            read_timeout = settings.read_timeout
            while True:
                chunk, more = await conn.read_chunk(read_timeout)
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if not more:
                    break
        except UpstreamError as exc:
            # Headers are gone already: all we can do is cut the connection so the client sees a short answer.
            conn.close()
            UPSTREAM_ERRORS.labels(service, "cut").inc()
            log.warning("upstream cut the response", upstream=service, error=str(exc))
            raise
        except BaseException:
            conn.close()
            raise
        conn.finished()
        return status

    async def _fail_upstream(
        self, send: Send, service: str, exc: UpstreamError, id_headers: list[tuple[bytes, bytes]]
    ) -> int:
        """The JSON 502/504 for a request that never got an answer."""
        settings = self.gateway.settings
        if isinstance(exc, ReadTimeout):
            message = f"The {service} service did not answer within {settings.read_timeout:g} s"
        elif isinstance(exc, WriteTimeout):
            message = f"The {service} service did not take the request within {settings.write_timeout:g} s"
        elif isinstance(exc, ConnectTimeout | PoolTimeout):
            message = f"The {service} service did not accept a connection in time"
        elif isinstance(exc, ConnectRefused):
            message = f"The {service} service is unavailable ({exc})"
        else:
            message = f"The {service} service broke the connection ({exc})"
        status = 504 if exc.kind == "timeout" else 502
        UPSTREAM_ERRORS.labels(service, exc.kind).inc()
        log.warning("upstream failed", upstream=service, kind=exc.kind, status=status)
        error = "upstream_timeout" if status == 504 else "upstream_unavailable"
        body = error_content(status, message, {"upstream": service}, code=error)
        await send_json(send, status, body, id_headers)
        return status
