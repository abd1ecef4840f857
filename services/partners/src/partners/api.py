"""HTTP routes of the partners service: the catalogue, the stream, partner and webhook administration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from distretto_shared.contracts import public as pub
from distretto_shared.conventions import HexId
from distretto_shared.identity import Principal
from distretto_shared.web import Invalid, Page, Paging, current_principal, make_page
from partners import domain, metrics, service
from partners.log import LogTail, Notifier, read_log
from partners.models import (
    AttemptPublic,
    EndpointCreate,
    EndpointPublic,
    EndpointWithSecret,
    KafkaAccessOut,
    MessagePublic,
    PartnerCreate,
    PartnerCreated,
    PartnerPublic,
    PartnerUpdate,
    ReplayRequest,
    ReplayResult,
)

router = APIRouter()

Caller = Annotated[Principal, Depends(current_principal)]


def deps(request: Request) -> service.Deps:
    """The use cases' dependencies."""
    ctx = request.app.state.ctx
    return service.Deps(db=ctx.db, settings=ctx.settings, notifier=ctx.singletons[Notifier])


Deps = Annotated[service.Deps, Depends(deps)]


# --- the catalogue (public)


@router.get("/catalogue", tags=["catalogue"], summary="The public event types and their JSON schemas")
async def catalogue() -> dict[str, Any]:
    return {
        "types": [
            {
                "type": cls.event_type,
                "topic": cls.topic,
                "description": (cls.__doc__ or "").strip(),
                "schema": cls.model_json_schema(),
            }
            for cls in pub.PUBLIC_TYPES
        ]
    }


@router.get("/asyncapi.json", tags=["catalogue"], summary="AsyncAPI 3 document of the public topics")
async def asyncapi() -> dict[str, Any]:
    from partners.app import public_asyncapi

    return public_asyncapi()


# --- server-sent events (partners)


@router.get(
    "/stream",
    tags=["stream"],
    summary="Server-sent events of the partner's granted types; resume with Last-Event-ID",
    response_class=StreamingResponse,
)
async def stream(
    request: Request,
    caller: Caller,
    d: Deps,
    types: Annotated[str | None, Query(description="Comma-separated public types (default: all granted)")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        str | None, Query(description="Position to resume after (for clients that cannot set headers)")
    ] = None,
) -> StreamingResponse:
    partner = await service.partner_of(d, caller)
    granted = set(partner.event_types)
    if types:
        wanted = {t.strip() for t in types.split(",") if t.strip()}
        unknown = sorted(wanted - set(pub.PUBLIC_TYPE_NAMES))
        if unknown:
            raise Invalid(f"Unknown public event types: {', '.join(unknown)}")
        refused = sorted(wanted - granted)
        if refused:
            raise service.Forbidden(f"Not granted to this partner: {', '.join(refused)}")
        selected = sorted(wanted)
    else:
        selected = sorted(granted)
    try:
        position = domain.parse_last_event_id(last_event_id if last_event_id is not None else after)
    except ValueError:
        raise Invalid("Last-Event-ID must be a position this stream sent (a non-negative integer)") from None
    return StreamingResponse(
        _events(request, d, partner.id, selected, position),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _events(
    request: Request, d: service.Deps, partner_id: str, types: list[str], position: int
) -> AsyncIterator[bytes]:
    """The stream: log rows after ``position``, one batch at a time (the client's pace bounds memory:
    nothing is read before the previous batch was written), heartbeats when idle. The grant is read
    again before each batch: a partner deactivated (or a type withdrawn) stops receiving at once,
    not at its next reconnection."""
    settings = d.settings
    tail: LogTail = request.app.state.ctx.singletons[LogTail]
    metrics.STREAMS_OPEN.inc()
    held = 0
    try:
        yield b"retry: 2000\n\n"
        checked = -1  # the log was read up to this position (of any type) and nothing more was ours
        regrant = True
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while not tail.closing:  # the service is stopping: the client resumes with Last-Event-ID
            if regrant or tail.last_seq > checked:
                types = await service.still_granted(d, partner_id, types)
                if not types:
                    return
                regrant = False
            if tail.last_seq > checked:
                newest = tail.last_seq
                rows = await read_log(d.db, position, types, settings.stream_batch_size)
                held = len(rows)
                metrics.STREAM_BUFFERED.inc(held)
                for row in rows:
                    assert row.seq is not None
                    data = domain.envelope(
                        event_id=row.event_id,
                        event_type=row.event_type,
                        source=row.source,
                        subject=row.subject,
                        time=row.time,
                        payload=row.payload,
                    )
                    # The server waits here while the connection's buffers are full (uvicorn's flow
                    # control): nothing more is read from the log until the client takes this.
                    yield domain.sse_frame(row.seq, row.event_type, data)
                    held -= 1
                    metrics.STREAM_BUFFERED.dec()
                    metrics.STREAM_SENT.inc()
                    position = row.seq
                if rows:
                    idle_since = loop.time()
                if len(rows) == settings.stream_batch_size:
                    continue
                checked = max(position, newest)
            if await request.is_disconnected():
                return
            remaining = settings.stream_heartbeat_seconds - (loop.time() - idle_since)
            woken = remaining > 0 and await tail.wait_beyond(checked, remaining)
            if not woken and loop.time() - idle_since >= settings.stream_heartbeat_seconds:
                idle_since = loop.time()
                regrant = True  # an idle stream still notices a partner deactivated
                yield domain.HEARTBEAT
    finally:
        metrics.STREAM_BUFFERED.dec(held)
        metrics.STREAMS_OPEN.dec()


# --- partner administration (admin)


def _partner(p: Any) -> PartnerPublic:
    return PartnerPublic.model_validate(p, from_attributes=True)


def _endpoint(e: Any, with_secret: bool = False) -> EndpointPublic:
    cls = EndpointWithSecret if with_secret else EndpointPublic
    return cls.model_validate(e, from_attributes=True)


@router.post("/partners", status_code=201, tags=["partners"], summary="Create a partner")
async def create_partner(data: PartnerCreate, caller: Caller, d: Deps) -> PartnerCreated:
    """With ``"kafka": true`` the answer carries the partner's Kafka password: shown this once."""
    service.require_admin(caller)
    partner, kafka = await service.create_partner(d, data)
    return PartnerCreated(**_partner(partner).model_dump(), kafka=kafka)


@router.post(
    "/partners/{partner_id}/kafka",
    status_code=201,
    tags=["partners"],
    summary="Direct Kafka access: a SCRAM user reading the granted public topics (password shown this once)",
)
async def grant_kafka(partner_id: HexId, caller: Caller, d: Deps) -> KafkaAccessOut:
    """Called again, gives a new password (the previous one stops working)."""
    service.require_admin(caller)
    return await service.grant_kafka(d, partner_id)


@router.delete(
    "/partners/{partner_id}/kafka", tags=["partners"], summary="Remove the partner's Kafka user and its ACLs"
)
async def revoke_kafka(partner_id: HexId, caller: Caller, d: Deps) -> PartnerPublic:
    service.require_admin(caller)
    return _partner(await service.revoke_kafka(d, partner_id))


@router.get("/partners", tags=["partners"], summary="Partners")
async def list_partners(caller: Caller, d: Deps, params: Paging) -> Page[PartnerPublic]:
    service.require_admin(caller)
    rows, total = await service.list_partners(d, params.limit, params.offset)
    return make_page([_partner(p) for p in rows], total, params)


@router.get("/partners/{partner_id}", tags=["partners"], summary="One partner")
async def get_partner(partner_id: HexId, caller: Caller, d: Deps) -> PartnerPublic:
    service.require_admin(caller)
    return _partner(await service.get_partner(d, partner_id))


@router.patch("/partners/{partner_id}", tags=["partners"], summary="Change a partner (grant, key, active)")
async def update_partner(partner_id: HexId, data: PartnerUpdate, caller: Caller, d: Deps) -> PartnerPublic:
    service.require_admin(caller)
    return _partner(await service.update_partner(d, partner_id, data))


@router.post(
    "/partners/{partner_id}/webhooks",
    status_code=201,
    tags=["webhooks"],
    summary="Add a webhook endpoint (its signing secret is shown this once)",
)
async def create_endpoint(partner_id: HexId, data: EndpointCreate, caller: Caller, d: Deps) -> EndpointWithSecret:
    service.require_admin(caller)
    endpoint, secret = await service.create_endpoint(d, partner_id, data.url, data.event_types)
    return EndpointWithSecret(**_endpoint(endpoint).model_dump(), secret=secret)


@router.get("/partners/{partner_id}/webhooks", tags=["webhooks"], summary="A partner's webhook endpoints")
async def list_endpoints(partner_id: HexId, caller: Caller, d: Deps) -> list[EndpointPublic]:
    service.require_admin(caller)
    await service.get_partner(d, partner_id)
    return [_endpoint(e) for e in await service.list_endpoints(d, partner_id)]


@router.get("/webhooks/{endpoint_id}", tags=["webhooks"], summary="One webhook endpoint")
async def get_endpoint(endpoint_id: HexId, caller: Caller, d: Deps) -> EndpointPublic:
    service.require_admin(caller)
    return _endpoint(await service.get_endpoint(d, endpoint_id))


@router.post(
    "/webhooks/{endpoint_id}/rotate-secret",
    tags=["webhooks"],
    summary="New signing secret (shown once); the old one also signs for a day",
)
async def rotate_secret(endpoint_id: HexId, caller: Caller, d: Deps) -> EndpointWithSecret:
    service.require_admin(caller)
    endpoint, secret = await service.rotate_secret(d, endpoint_id)
    return EndpointWithSecret(**_endpoint(endpoint).model_dump(), secret=secret)


@router.post("/webhooks/{endpoint_id}/enable", tags=["webhooks"], summary="Enable an endpoint again")
async def enable(endpoint_id: HexId, caller: Caller, d: Deps) -> EndpointPublic:
    service.require_admin(caller)
    return _endpoint(await service.set_enabled(d, endpoint_id, True))


@router.post("/webhooks/{endpoint_id}/disable", tags=["webhooks"], summary="Disable an endpoint")
async def disable(endpoint_id: HexId, caller: Caller, d: Deps) -> EndpointPublic:
    service.require_admin(caller)
    return _endpoint(await service.set_enabled(d, endpoint_id, False))


@router.post("/webhooks/{endpoint_id}/replay", tags=["webhooks"], summary="Send one event again, or all since a time")
async def replay(endpoint_id: HexId, data: ReplayRequest, caller: Caller, d: Deps) -> ReplayResult:
    service.require_admin(caller)
    return ReplayResult(queued=await service.replay(d, endpoint_id, data.event_id, data.since))


@router.get("/webhooks/{endpoint_id}/messages", tags=["webhooks"], summary="Messages of an endpoint (newest first)")
async def messages(endpoint_id: HexId, caller: Caller, d: Deps, params: Paging) -> Page[MessagePublic]:
    service.require_admin(caller)
    await service.get_endpoint(d, endpoint_id)
    rows, total = await service.messages(d, endpoint_id, params.limit, params.offset)
    return make_page([MessagePublic.model_validate(r, from_attributes=True) for r in rows], total, params)


@router.get("/webhooks/{endpoint_id}/attempts", tags=["webhooks"], summary="Delivery log: every attempt")
async def attempts(endpoint_id: HexId, caller: Caller, d: Deps, params: Paging) -> Page[AttemptPublic]:
    service.require_admin(caller)
    await service.get_endpoint(d, endpoint_id)
    rows, total = await service.attempts(d, endpoint_id, params.limit, params.offset)
    return make_page([AttemptPublic.model_validate(r, from_attributes=True) for r in rows], total, params)
