"""The yardstick of the request-path benchmark: a bare FastAPI + SQLAlchemy Core app.

It answers the benchmark's routes of each service with the SQL statements of the aggregate a
route reads or changes (the same tables, on the same database, migrated by the service itself; the
aggregate a write changes loaded ``FOR UPDATE`` as the service's units of work do), and nothing
else: no credential, no middleware, no request metrics, no logging, no pydantic models, no ORM.
Writes take the same locks (SQLite: ``BEGIN IMMEDIATE``) and commit as the service does, outbox
row included. What a service does besides in the same request is left out and counted in the
service's figure: matchmaking's search index (its items, change log and encoding queue, written in
the write's transaction, and the vectors its encoder child computes after), projects' deadline
schedule, the newsletter's wake-up of its delivery engine. What the service costs beyond this is
its plumbing and that extra work.

    uv run python bench/services/bare.py --service membership --url <SQLAlchemy URL> [--schema S] --port P

Run by ``bench/services/run.py`` in the same invocation as the service, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import MetaData, Table, event, func, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

TABLES = {
    "membership": ("organisation", "status_change", "outbox"),
    "projects": ("project", "participant", "outbox"),
    "newsletter": ("campaign", "template", "mailing_list", "delivery", "bounce", "consent_record"),
    "matchmaking": ("organisation", "opportunity", "outbox"),
}


def now() -> datetime:
    return datetime.now(UTC)


def as_json(row: Any) -> Response:
    return Response(json.dumps(dict(row), default=str), media_type="application/json")


def hex_id(value: str) -> str:
    """The 32-hex storage form of an id given dashed (projects and newsletter store that form)."""
    try:
        return uuid.UUID(value).hex
    except ValueError:
        return value


def dashed(row: Any) -> dict[str, Any]:
    """A row with its id in the one textual form the API gives (dashed)."""
    out = dict(row)
    out["id"] = str(uuid.UUID(out["id"]))
    return out


def not_found() -> Response:
    return Response(b'{"error":"not_found"}', status_code=404, media_type="application/json")


def outbox_values(topic: str, key: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """An outbox row as the backbone writes one: a CloudEvent in JSON, keyed by the aggregate."""
    event_id = uuid.uuid4().hex
    payload = {
        "specversion": "1.0",
        "id": event_id,
        "type": event_type,
        "source": "/distretto/bare",
        "time": now().isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
    return {
        "event_id": event_id,
        "topic": topic,
        "key": key,
        "event_type": event_type,
        "headers": {"ce_id": event_id, "ce_type": event_type},
        "payload": json.dumps(payload, default=str),
        "created_at": now(),
    }


class Bare:
    """The engine and the reflected tables of one service's database."""

    def __init__(self, url: str, schema: str | None) -> None:
        self.sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # the service's pool size, without its pre-ping
            kwargs.update(pool_size=10, max_overflow=10)
            if schema:
                kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.t: dict[str, Table] = {}

    async def reflect(self, names: tuple[str, ...], timeout: float = 300.0) -> None:
        """The service's tables (its migrations have run: the benchmark starts this app after the service)."""
        deadline = time.monotonic() + timeout
        while True:
            metadata = MetaData()
            try:
                async with self.engine.connect() as conn:
                    await conn.run_sync(lambda sync, md=metadata: md.reflect(sync, only=list(names)))
                self.t = dict(metadata.tables)
                return
            except InvalidRequestError:  # not there yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction that writes (SQLite: takes the write lock at BEGIN, as the service does)."""
        async with self.engine.connect() as conn:
            if self.sqlite:
                conn = await conn.execution_options(bare_write=True)
            async with conn.begin():
                yield conn


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # the service's durability and locking (WAL, synchronous=NORMAL, busy timeout)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get("bare_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_bare(service: str, url: str, schema: str | None) -> FastAPI:
    db = Bare(url, schema)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await db.reflect(TABLES[service])
        yield
        await db.engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if service == "membership":
        _membership(app, db)
    elif service == "projects":
        _projects(app, db)
    elif service == "newsletter":
        _newsletter(app, db)
    elif service == "matchmaking":
        _matchmaking(app, db)
    else:
        raise SystemExit(f"unknown service {service}")
    return app


def _membership(app: FastAPI, db: Bare) -> None:
    @app.get("/organisations/{organisation_id}")
    async def get_organisation(organisation_id: str) -> Response:
        org = db.t["organisation"]
        async with db.engine.connect() as conn:
            row = (await conn.execute(select(org).where(org.c.id == organisation_id))).mappings().first()
        return as_json(row) if row else not_found()

    @app.post("/organisations", status_code=201)
    async def create_organisation(request: Request) -> Response:
        body = await request.json()
        at = now()
        values = {
            "id": str(uuid.uuid4()),
            "name": body["name"],
            "kind": body["kind"],
            "sectors": body.get("sectors", []),
            "address": body.get("address", ""),
            "country": body.get("country", "IT"),
            "description": body.get("description", ""),
            "competences": body.get("competences", []),
            "keywords": body.get("keywords", []),
            "status": "applied",
            "status_changed_at": at,
            "created_at": at,
            "updated_at": at,
        }
        async with db.write() as conn:
            await conn.execute(
                db.t["outbox"].insert(),
                outbox_values("membership.organisations", values["id"], "OrganisationApplied", values),
            )
            await conn.execute(db.t["organisation"].insert(), values)
        return Response(json.dumps(values, default=str), status_code=201, media_type="application/json")

    @app.post("/organisations/{organisation_id}/approve")
    async def approve(organisation_id: str) -> Response:
        org = db.t["organisation"]
        at = now()
        async with db.write() as conn:
            row = (
                (await conn.execute(select(org).where(org.c.id == organisation_id).with_for_update()))
                .mappings()
                .first()
            )
            if row is None:
                return not_found()
            if row["status"] != "applied":
                return Response(b'{"error":"conflict"}', status_code=409, media_type="application/json")
            changes = {
                "status": "active",
                "joined_on": at.date(),
                "renewal_due": (at + timedelta(days=365)).date(),
                "status_changed_at": at,
                "updated_at": at,
            }
            result = {**row, **changes}
            await conn.execute(
                db.t["outbox"].insert(),
                outbox_values("membership.organisations", organisation_id, "OrganisationApproved", result),
            )
            await conn.execute(
                db.t["status_change"].insert(),
                {
                    "id": str(uuid.uuid4()),
                    "organisation_id": organisation_id,
                    "action": "approve",
                    "from_status": "applied",
                    "to_status": "active",
                    "reason": "",
                    "at": at,
                },
            )
            await conn.execute(org.update().where(org.c.id == organisation_id).values(changes))
        return as_json(result)


def _projects(app: FastAPI, db: Bare) -> None:
    async def members(conn: AsyncConnection, project_id: str) -> list[str]:
        p = db.t["participant"]
        query = (
            select(p.c.organisation_id).distinct().where(p.c.project_id == project_id, p.c.organisation_id.is_not(None))
        )
        return list((await conn.execute(query)).scalars())

    @app.get("/projects/{project_id}")
    async def get_project(project_id: str) -> Response:
        project_id = hex_id(project_id)
        project = db.t["project"]
        async with db.engine.connect() as conn:
            row = (await conn.execute(select(project).where(project.c.id == project_id))).mappings().first()
            if row is None:
                return not_found()
            orgs = await members(conn, project_id)
        return as_json({**dashed(row), "member_organisation_ids": orgs})

    @app.post("/projects", status_code=201)
    async def create_project(request: Request) -> Response:
        body = await request.json()
        at = now()
        values = {
            "id": uuid.uuid4().hex,
            "acronym": body["acronym"],
            "title": body["title"],
            "status": body.get("status", "planned"),
            "topics": [],
            "objective": "",
            "keywords": [],
            "foundation_role": "none",
            "thematic_areas": [],
            "notes": "",
            "created_at": at,
            "updated_at": at,
        }
        async with db.write() as conn:
            await conn.execute(db.t["project"].insert(), values)
            orgs = await members(conn, values["id"])
            await conn.execute(
                db.t["outbox"].insert(),
                outbox_values("projects.projects", values["id"], "ProjectRegistered", {**values, "members": orgs}),
            )
        return Response(json.dumps(dashed(values), default=str), status_code=201, media_type="application/json")

    @app.patch("/projects/{project_id}")
    async def update_project(project_id: str, request: Request) -> Response:
        project_id = hex_id(project_id)
        body = await request.json()
        project = db.t["project"]
        at = now()
        async with db.write() as conn:
            row = (
                (await conn.execute(select(project).where(project.c.id == project_id).with_for_update()))
                .mappings()
                .first()
            )
            if row is None:
                return not_found()
            changes = {**body, "updated_at": at}
            await conn.execute(project.update().where(project.c.id == project_id).values(changes))
            result = {**row, **changes}
            orgs = await members(conn, project_id)
            await conn.execute(
                db.t["outbox"].insert(),
                outbox_values("projects.projects", project_id, "ProjectUpdated", {**result, "members": orgs}),
            )
            await conn.execute(
                db.t["outbox"].insert(),
                outbox_values("projects.projects", project_id, "ProjectStatusChanged", {**result, "members": orgs}),
            )
        return as_json(dashed(result))


def _newsletter(app: FastAPI, db: Bare) -> None:
    @app.get("/campaigns/{campaign_id}")
    async def get_campaign(campaign_id: str) -> Response:
        campaign_id = hex_id(campaign_id)
        c, d, b, r = (db.t[n] for n in ("campaign", "delivery", "bounce", "consent_record"))
        async with db.engine.connect() as conn:
            row = (await conn.execute(select(c).where(c.c.id == campaign_id))).mappings().first()
            if row is None:
                return not_found()
            by_status = dict(
                (
                    await conn.execute(
                        select(d.c.status, func.count()).where(d.c.campaign_id == campaign_id).group_by(d.c.status)
                    )
                ).all()  # type: ignore[arg-type]
            )
            bounces = (
                await conn.execute(select(func.count()).select_from(b).where(b.c.campaign_id == campaign_id))
            ).scalar()
            unsubscribed = (
                await conn.execute(
                    select(func.count())
                    .select_from(r)
                    .where(r.c.campaign_id == campaign_id, r.c.action == "unsubscribe")
                )
            ).scalar()
        return as_json({**dashed(row), "deliveries": by_status, "bounces": bounces, "unsubscribed": unsubscribed})

    @app.post("/campaigns", status_code=201)
    async def create_campaign(request: Request) -> Response:
        body = await request.json()
        t, ml = db.t["template"], db.t["mailing_list"]
        at = now()
        async with db.write() as conn:
            if (await conn.execute(select(t).where(t.c.id == hex_id(body["template_id"])))).first() is None:
                return Response(b'{"error":"invalid"}', status_code=422, media_type="application/json")
            lists = (
                await conn.execute(select(ml).where(ml.c.id.in_(body["lists"]) | ml.c.slug.in_(body["lists"])))
            ).all()
            values = {
                "id": uuid.uuid4().hex,
                "name": body["name"],
                "subject": body["subject"],
                "template_id": hex_id(body["template_id"]),
                "lists": [row.id for row in lists],
                "interests": [],
                "segments": [],
                "data": {},
                "kind": "regular",
                "status": "draft",
                "recipients": 0,
                "created_at": at,
                "updated_at": at,
            }
            await conn.execute(db.t["campaign"].insert(), values)
        return Response(json.dumps(dashed(values), default=str), status_code=201, media_type="application/json")

    @app.patch("/campaigns/{campaign_id}")
    async def update_campaign(campaign_id: str, request: Request) -> Response:
        campaign_id = hex_id(campaign_id)
        body = await request.json()
        c = db.t["campaign"]
        async with db.write() as conn:
            row = (await conn.execute(select(c).where(c.c.id == campaign_id).with_for_update())).mappings().first()
            if row is None:
                return not_found()
            changes = {**body, "updated_at": now()}
            await conn.execute(c.update().where(c.c.id == campaign_id).values(changes))
        return as_json(dashed({**row, **changes}))


def _matchmaking(app: FastAPI, db: Bare) -> None:
    @app.get("/organisations/{organisation_id}")
    async def get_profile(organisation_id: str) -> Response:
        org = db.t["organisation"]
        async with db.engine.connect() as conn:
            row = (await conn.execute(select(org).where(org.c.organisation_id == organisation_id))).mappings().first()
        if row is None:
            return not_found()
        return as_json({k: v for k, v in row.items() if k not in ("embedding", "embedded_hash")})

    @app.post("/opportunities", status_code=201)
    async def create_opportunity(request: Request) -> Response:
        body = await request.json()
        at = now()
        values = {
            "id": str(uuid.uuid4()),
            "opportunity_type": body["opportunity_type"],
            "title": body["title"],
            "summary": body.get("summary", ""),
            "keywords": [],
            "technology_fields": [],
            "market_fields": [],
            "sectors": [],
            "owner_organisation_id": body["owner_organisation_id"],
            "expires_on": date.today() + timedelta(days=365),
            "status": "active",
            "renewals": 0,
            "created_at": at,
            "updated_at": at,
        }
        async with db.write() as conn:
            await conn.execute(db.t["opportunity"].insert(), values)
            names = list((await conn.execute(select(db.t["organisation"].c.name))).scalars())
            await conn.execute(
                db.t["outbox"].insert(),
                outbox_values(
                    "matchmaking.opportunities", values["id"], "OpportunityPublished", {**values, "n": len(names)}
                ),
            )
        return Response(json.dumps(values, default=str), status_code=201, media_type="application/json")

    @app.patch("/opportunities/{opportunity_id}")
    async def update_opportunity(opportunity_id: str, request: Request) -> Response:
        body = await request.json()
        o = db.t["opportunity"]
        async with db.write() as conn:
            row = (await conn.execute(select(o).where(o.c.id == opportunity_id).with_for_update())).mappings().first()
            if row is None:
                return not_found()
            changes = {**body, "updated_at": now()}
            await conn.execute(o.update().where(o.c.id == opportunity_id).values(changes))
        return as_json({k: v for k, v in {**row, **changes}.items() if k not in ("embedding", "embedded_hash")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", required=True, choices=sorted(TABLES))
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    # the service's server options (``python -m <service> serve``): uvicorn's defaults, quiet
    uvicorn.run(
        create_bare(args.service, args.url, args.schema),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
