"""Home: the district figures with charts (live), deadlines, running campaigns, the latest events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from console import domain, service
from console.pages._common import Panel, items, panel
from console.web import OptionalUserDep, gateway_of, locale_of, page_router, render

router = page_router()


def feed(rows: list[Any], _: Any) -> list[dict[str, Any]]:
    return [{"id": r.id, "at": r.at, "kind": r.kind, "text": domain.describe(r.kind, r.params, _)} for r in rows]


@router.get("/")
async def home(request: Request, user: OptionalUserDep) -> Response:
    if user is None:
        return RedirectResponse("/login", status_code=303)
    gateway = gateway_of(request)
    today = date.today()
    calls: dict[str, Any] = {"figures": gateway.get("/api/membership/figures", user.token)}
    if user.is_staff or user.role == "member":
        calls["deliverables"] = gateway.get(
            "/api/projects/deliverables",
            user.token,
            params={"status": "planned", "due_after": today.isoformat(), "limit": 8},
        )
        calls["projects"] = gateway.get("/api/projects/projects", user.token, params={"limit": 500})
    if user.is_staff:
        calls["campaigns"] = gateway.get("/api/newsletter/campaigns", user.token, params={"status": "running"})
        calls["late"] = gateway.get(
            "/api/projects/deliverables",
            user.token,
            params={"status": "late", "due_before": (today + timedelta(days=1)).isoformat(), "limit": 5},
        )
    if user.organisation_id:
        calls["organisation"] = gateway.get(f"/api/membership/organisations/{user.organisation_id}", user.token)
    ctx = request.app.state.ctx
    # the services' panels and the console's own feed, all at once
    (rows, last_id), results = await asyncio.gather(
        asyncio.gather(service.latest_activity(ctx.db, staff=user.is_staff), service.last_activity_id(ctx.db)),
        asyncio.gather(*(panel(c) for c in calls.values())),
    )
    last_id = max([last_id, *(r.id or 0 for r in rows)])  # the stream goes on after what the page shows
    data: dict[str, Panel] = dict(zip(calls, results, strict=True))
    acronyms = {p["id"]: p["acronym"] for p in items(data["projects"].data)} if "projects" in data else {}
    return render(
        request,
        "home.html",
        {
            "panels": data,
            "acronyms": acronyms,
            "feed": feed(rows, locale_of(request).gettext),
            "last_id": last_id,
            "figures_json": json.dumps(data["figures"].data) if data["figures"].ok else "null",
        },
    )


@router.get("/live", response_class=EventSourceResponse)
async def live(request: Request, user: OptionalUserDep, after: int | None = None) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: each new activity row (in the reader's words) and the district figures when they change.

    Anonymous readers (the public figures page) get the public rows only; resume from ``Last-Event-ID``.
    """
    ctx = request.app.state.ctx
    _ = locale_of(request).gettext
    staff = user is not None and user.is_staff
    resume = request.headers.get("last-event-id")
    last = int(resume) if resume and resume.isdigit() else after if after is not None else None
    if last is None:
        last = await service.last_activity_id(ctx.db)
    poll = ctx.settings.stream_poll_seconds
    idle = 0.0
    yield ServerSentEvent(comment="connected", retry=3000)
    while not ctx.stopping.is_set():  # the service is stopping: the reader resumes with Last-Event-ID
        if await request.is_disconnected():
            return
        rows = await service.activity_after(ctx.db, last, staff)
        for row in rows:
            last = row.id or last
            if row.kind == "figures.changed":
                yield ServerSentEvent(event="figures", id=str(row.id), data=row.params.get("figures", {}))
            else:
                text = domain.describe(row.kind, row.params, _)
                yield ServerSentEvent(
                    event="activity", id=str(row.id), data={"text": text, "at": locale_of(request).datetime(row.at)}
                )
        if rows:
            idle = 0.0
        else:
            idle += poll
            if idle >= 15:  # a comment now and then, so no proxy on the way closes an idle stream
                idle = 0.0
                yield ServerSentEvent(comment="keep-alive")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.stopping.wait(), poll)
