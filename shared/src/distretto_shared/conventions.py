"""The API conventions of every service (docs/api-conventions.md), implemented once.

- one error shape for every 4xx/5xx, unknown routes and methods included (:class:`ErrorBody`,
  :func:`install_error_handlers`), with a complete ``Allow`` on 405 and an answer to ``OPTIONS``;
- the error responses each route can give, in its OpenAPI operation (:func:`document_errors`);
- timestamps always with an offset (:data:`UtcDateTime`), ids in one textual form (:data:`Id`),
  numbers that refuse booleans (:data:`StrictInt`, :data:`StrictFloat`), dates as ``YYYY-MM-DD`` only
  (:data:`IsoDate`), enums in lower snake case
  that still take the old upper case on input (:func:`lower_enum`);
- bounded paging (:data:`MAX_LIMIT`, :data:`MAX_OFFSET`) and one :func:`paginate`.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, BeforeValidator, Field, PlainSerializer, ValidationInfo, WithJsonSchema
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select
from starlette.convertors import PathConvertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import get_route_path

from distretto_shared.casing import snake_case
from distretto_shared.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=Enum)

MAX_LIMIT = 500
"""The largest page."""
MAX_OFFSET = 1_000_000
"""The farthest a list can be paged by offset (beyond it a filter narrows the list): it keeps every
value the databases can take, so an absurd offset is a 422, never a 500."""


# --- the one error shape ---------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of every service and of the gateway."""

    error: str = Field(description="Machine-readable code in lower snake case (not_found, validation_error, …)")
    message: str = Field(description="A sentence for a person")
    details: list[dict[str, Any]] = Field(
        default_factory=list,
        description="What exactly was wrong, one object per problem (validation: loc, msg, type)",
    )


CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


def error_content(status: int, message: str, details: Any = None, code: str | None = None) -> dict[str, Any]:
    """The JSON body of an error (``details`` given as an object is the one entry of the list)."""
    if details is None:
        listed: list[Any] = []
    elif isinstance(details, list):
        listed = [d if isinstance(d, dict) else {"value": d} for d in details]
    elif isinstance(details, dict):
        listed = [details]
    else:
        listed = [{"value": details}]
    return {"error": code or CODES.get(status, "error"), "message": message, "details": listed}


def error_response(
    status: int, message: str, details: Any = None, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A :class:`JSONResponse` in the one error shape."""
    return JSONResponse(status_code=status, content=error_content(status, message, details, code), headers=headers)


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class _RouteTable:
    """A router's paths, flattened and ranked once for :func:`_owning_path` (rebuilt when routes change)."""

    version: tuple[int, int]
    mounts: tuple[re.Pattern[str], ...]
    """Paths of mounts and websockets: a URL one of them matches is the framework's to route."""
    paths: tuple[tuple[re.Pattern[str], str, frozenset[str]], ...]
    """(regex, path, every method of that path), most literal first: the fewest parameters, a
    catch-all ``:path`` last, the first included among equals."""


_TABLE_ATTRIBUTE = "_distretto_route_table"


def _routes_version(router: Any) -> tuple[int, int]:
    routes = getattr(router, "routes", ())
    versioned = getattr(router, "_get_routes_version", None)  # counts routes added to included routers
    return len(routes), versioned() if callable(versioned) else 0


def _route_table(router: Any) -> _RouteTable:
    version = _routes_version(router)
    table = getattr(router, _TABLE_ATTRIBUTE, None)
    if table is not None and table.version == version:
        return table
    mounts: list[re.Pattern[str]] = []
    ranked: list[tuple[tuple[bool, int, int], re.Pattern[str], str]] = []
    methods: dict[str, set[str]] = {}
    for index, route in enumerate(iter_route_contexts(getattr(router, "routes", ()))):
        regex, convertors = getattr(route, "path_regex", None), getattr(route, "param_convertors", None) or {}
        if regex is None:
            continue
        if route.methods is None:  # a mount (or a websocket): not ours to decide
            mounts.append(regex)
            continue
        catch_all = any(isinstance(c, PathConvertor) for c in convertors.values())
        path = str(route.path_format)
        ranked.append(((catch_all, len(convertors), index), regex, path))
        methods.setdefault(path, set()).update(route.methods)
    ranked.sort(key=lambda r: r[0])
    table = _RouteTable(
        version,
        tuple(mounts),
        tuple((regex, path, frozenset(methods[path])) for _, regex, path in ranked),
    )
    with contextlib.suppress(AttributeError):  # a router that takes no attribute is ranked per request
        setattr(router, _TABLE_ATTRIBUTE, table)
    return table


def _owning_path(router: Any, scope: MutableMapping[str, Any]) -> tuple[str | None, frozenset[str]]:
    """The path that owns the request's URL, and the methods it takes. Of the paths matching the URL,
    the most literal owns it — the fewest parameters, a catch-all ``:path`` last, the first included
    among equals — so ``/organisations/export`` is never an organisation called "export". No path
    when no route, or a mount, matches (the framework's routing decides).

    On every request: the paths are ranked once per router (:class:`_RouteTable`), so this is one
    regular-expression match per path until the first that matches."""
    url = get_route_path(scope)
    table = _route_table(router)
    if any(regex.match(url) for regex in table.mounts):
        return None, frozenset()
    for regex, path, methods in table.paths:
        if regex.match(url):
            return path, methods
    return None, frozenset()


def allowed_methods(router: Any, scope: MutableMapping[str, Any]) -> list[str]:
    """Every method the path that owns this URL takes (:func:`_owning_path`), and OPTIONS."""
    methods = _owning_path(router, scope)[1]
    return sorted((methods & set(METHODS)) | {"OPTIONS"})


def _most_literal_path_answers(router: Any) -> None:
    """A method the path owning the URL (:func:`_owning_path`) does not take is a 405, even where a
    later, parameterised path takes it: FastAPI would hand ``PATCH /organisations/export`` (GET only)
    to ``PATCH /organisations/{organisation_id}``. A method it takes is routed as before (first route
    that matches: a service includes its literal paths first, tests/api/test_conventions.py checks)."""
    stack = router.middleware_stack

    async def route_request(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            owner, methods = _owning_path(router, scope)
            if owner is not None and scope["method"] not in methods:
                raise StarletteHTTPException(405)
        await stack(scope, receive, send)

    router.middleware_stack = route_request


def _loc(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


UNSTORABLE_TEXT = frozenset({"22021", "22P05"})
CONCURRENT_CHANGE = frozenset({"40001", "40P01", "55P03"})
"""PostgreSQL's serialization failure, deadlock and lock-not-available: two requests changed the same
records at once and the database stopped one — a 409 the caller retries, never a 500."""
"""PostgreSQL's SQLSTATEs for text it cannot store: character_not_in_repertoire (a NUL in ``text``)
and untranslatable_character (``\\u0000`` in ``jsonb``)."""


def install_error_handlers(app: FastAPI) -> None:
    """Every error in :class:`ErrorBody`'s shape: the use cases' refusals, validation, unknown routes
    and methods (405 with the full ``Allow``; ``OPTIONS`` answered 204 with it; a URL belongs to its most
    literal path: :func:`_most_literal_path_answers`). A crash is answered by
    :class:`~distretto_shared.web.RequestContextMiddleware` (500, same shape)."""
    from distretto_shared.web import DomainError  # web imports this module

    _most_literal_path_answers(app.router)

    @app.exception_handler(DomainError)
    async def domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        return error_response(exc.status, exc.message, exc.details, exc.code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(f"{_loc(e.get('loc', ()))}: {e.get('msg')}" for e in errors) or "invalid request"
        details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": e.get("type")} for e in errors]
        return error_response(422, message, details)

    @app.exception_handler(DBAPIError)
    async def database_error(_request: Request, exc: DBAPIError) -> Response:
        # PostgreSQL refuses a NUL character in text (SQLite stores it): the caller's input, not a crash.
        if getattr(exc.orig, "sqlstate", None) in UNSTORABLE_TEXT:
            return error_response(422, "Text must not contain a NUL character (\\u0000)")
        if getattr(exc.orig, "sqlstate", None) in CONCURRENT_CHANGE:
            return error_response(
                409,
                "Another request changed the same records at the same time and this one was stopped; "
                "nothing was saved: read the current state and try again",
                [{"reason": "concurrent_change"}],
            )
        raise exc

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = allowed_methods(request.app.router, request.scope)
            headers["Allow"] = ", ".join(allow)
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=headers)
            return error_response(
                405, f"{request.method} is not allowed here; allowed: {', '.join(allow)}", headers=headers
            )
        if exc.status_code == 404 and exc.detail == "Not Found":
            return error_response(404, f"No route {request.url.path}", headers=headers)
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_response(exc.status_code, message, headers=headers or None)


# --- OpenAPI: the errors every route can answer -------------------------------------------------------

DESCRIPTIONS = {
    400: "Malformed request",
    401: "No valid credential",
    403: "The caller may not do this",
    404: "No such resource (or not visible to the caller)",
    409: "Conflicts with the current state",
    413: "Request body too large",
    422: "Invalid input",
    429: "Too many requests",
}


ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_WRITES = {"post", "put", "patch", "delete"}
_METHODS = ("get", "put", "post", "delete", "patch")


def add_error_responses(doc: dict[str, Any], *, authenticated: bool, exempt: frozenset[str] = frozenset()) -> None:
    """Document, in an OpenAPI document, the error answers each operation can give, with :class:`ErrorBody`.

    Every operation: 400 (malformed, e.g. a bad Content-Length) and 404. Operations behind a
    credential (all but ``exempt`` paths): 401 and 403. With parameters or a body: 422 (FastAPI's
    own validation shape replaced). Changing something: 409, 413, 422 and 429. Whatever an operation
    documents itself stays, its error answers in the one shape."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, item in (doc.get("paths") or {}).items():
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            codes = {400, 404}
            if authenticated and path not in exempt:
                codes |= {401, 403}
            if op.get("parameters") or "requestBody" in op:
                codes.add(422)
            if method in _WRITES:
                codes |= {409, 413, 422, 429}
            responses = op.setdefault("responses", {})
            if path == "/readyz":
                responses.setdefault("503", {"description": "Not ready: the body says which check failed"})
            for code in codes:
                responses.setdefault(str(code), {"description": DESCRIPTIONS[code]})
            for code, response in responses.items():
                if code.startswith(("4", "5")) and not (path == "/readyz" and code == "503"):
                    response["content"] = {"application/json": {"schema": ERROR_REF}}
                    if response.get("description") in (None, "", "Validation Error"):
                        response["description"] = DESCRIPTIONS.get(int(code), "Error")


def document_errors(app: FastAPI, *, authenticated: bool, exempt: frozenset[str] = frozenset()) -> None:
    """Make ``app``'s OpenAPI document list every route's error answers (:func:`add_error_responses`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            add_error_responses(doc, authenticated=authenticated, exempt=exempt)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# --- field types -------------------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def format_utc(value: datetime) -> str:
    """ISO 8601 in UTC with ``Z`` (a naive value is taken as UTC, as the databases store it)."""
    return _aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDateTime = Annotated[
    datetime,
    PlainSerializer(format_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A timestamp: always answered in UTC with ``Z`` (a value without zone is UTC). Input is left as
pydantic reads it (each service already takes a zone-less input as UTC)."""

_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_DASHED = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def canonical_id(value: Any) -> Any:
    """The canonical textual form of an id: the 36-character dashed lower-case UUID (RFC 9562).

    The 32-hex form (which four services stored before) is accepted and rewritten; anything else
    is left for the lookup to refuse (a 404, as for any unknown id)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and (_HEX32.match(value) or _DASHED.match(value)):
        return str(uuid.UUID(value))
    return value


def hex_id(value: Any) -> Any:
    """The 32-hex storage form of an id given in either form (for the services that store it)."""
    if isinstance(value, str) and (_HEX32.match(value) or _DASHED.match(value)):
        return uuid.UUID(value).hex
    return value


def new_id() -> str:
    """A new id in the canonical form."""
    return str(uuid.uuid4())


Id = Annotated[
    str,
    BeforeValidator(canonical_id),
    PlainSerializer(canonical_id, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "uuid"}),
]
"""An id in a response (answered dashed) or a request (either form accepted, made dashed)."""

HexId = Annotated[
    str,
    BeforeValidator(hex_id),
    WithJsonSchema({"type": "string", "format": "uuid"}),
]
"""An id in a path or body of a service that stores the 32-hex form: either form accepted, given to
the use case as 32 hex digits (documented as ``format: uuid``, the form the answers carry). Anything
else is passed on unchanged, for the lookup to refuse (404)."""


FROM_TEXT = {"from_text": True}
"""Validation context for values read from text (a CSV cell): numbers may come as strings there."""


def _number_only(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, bool) or (isinstance(value, str | bytes) and not (info.context or {}).get("from_text")):
        raise ValueError("a JSON number is expected")
    return value


StrictInt = Annotated[int, BeforeValidator(_number_only)]
"""An integer from a JSON number only: ``true``/``false`` and ``"3"`` are refused (``3.0`` is an
integer to JSON Schema, so it stays accepted)."""
StrictFloat = Annotated[float, BeforeValidator(_number_only), Field(allow_inf_nan=False)]
"""A number from a JSON number only (no booleans, no strings, no NaN)."""


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: Any) -> Any:
    written = isinstance(value, str) and _ISO_DATE.match(value)
    if isinstance(value, datetime) or not (written or isinstance(value, date)):
        raise ValueError("a date as YYYY-MM-DD is expected")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
"""A date written ``YYYY-MM-DD`` only, as its schema's ``format: date`` says: pydantic alone also reads
``0`` or ``"1700000000"`` as a date (seconds since 1970), which turns a typo into 1970-01-01."""


def lower_enum(enum: type[E]) -> Callable[[Any], Any]:
    """A before-validator: the enum's value from its lower snake case or an older spelling (upper
    case, camel case), compared case-insensitively."""

    def convert(value: Any) -> Any:
        if isinstance(value, str) and not isinstance(value, Enum):
            lowered = snake_case(value)
            if any(m.value == lowered for m in enum):
                return lowered
        return value

    return convert


# --- paging ------------------------------------------------------------------------------------------


async def paginate(
    session: Any,
    query: Select[Any],
    params: Any,
    *,
    order_by: Sequence[Any],
    map: Callable[[Any], T] | None = None,
) -> Any:
    """One page of ``query`` (its total, then ``limit``/``offset`` rows in ``order_by``, each through
    ``map``) as a :class:`~distretto_shared.web.Page`; ``query`` selects one entity or columns."""
    from distretto_shared.web import make_page

    total = (await session.execute(select(func.count()).select_from(query.order_by(None).subquery()))).scalar_one()
    result = await session.execute(query.order_by(*order_by).limit(params.limit).offset(params.offset))
    rows = result.scalars().all() if len(query.column_descriptions) == 1 else result.all()
    items = [map(r) for r in rows] if map is not None else list(rows)
    return make_page(items, total, params)
