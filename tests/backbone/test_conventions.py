"""The API conventions as the backbone's app gives them to every service (docs/api-conventions.md)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, BeforeValidator, TypeAdapter, ValidationError

from distretto_dev.testing import DatabaseTarget, service_client
from distretto_shared.app import ServiceSpec, create_app
from distretto_shared.conventions import (
    MAX_OFFSET,
    HexId,
    Id,
    IsoDate,
    StrictFloat,
    StrictInt,
    UtcDateTime,
    lower_enum,
    paginate,
)
from distretto_shared.settings import ServiceSettings
from distretto_shared.web import Page, PageParams, page_params

from .example import MIGRATIONS, entries


class Colour(StrEnum):
    DARK_RED = "dark_red"
    BLUE = "blue"


class Thing(BaseModel):
    id: Id
    count: StrictInt
    weight: StrictFloat
    colour: Annotated[Colour, BeforeValidator(lower_enum(Colour))]
    at: UtcDateTime


class Entry(BaseModel):
    account_id: str
    amount: int


router = APIRouter()


@router.post("/things", status_code=201)
async def post_thing(body: Thing) -> Thing:
    return body


@router.get("/things/naive")
async def naive_time() -> Thing:
    return Thing(id="6f0c2a8e4b5d4c0e9a1b2c3d4e5f6a7b", count=1, weight=1, colour=Colour.BLUE, at=datetime(2026, 1, 2))


@router.get("/things/export")
async def export_things() -> dict[str, str]:
    return {"export": "all"}


@router.get("/things/{thing_id}")
async def get_thing(thing_id: str) -> dict[str, str]:
    return {"thing": thing_id}


@router.patch("/things/{thing_id}")
async def patch_thing(thing_id: str) -> dict[str, str]:
    return {"patched": thing_id}


@router.get("/entries")
async def list_entries(request: Request, params: Annotated[PageParams, Depends(page_params)]) -> Page[Entry]:
    async with request.app.state.ctx.db.read() as session:
        query = sa.select(entries.c.account_id, entries.c.amount)
        return await paginate(  # type: ignore[no-any-return]
            session, query, params, order_by=[entries.c.id], map=lambda r: Entry(account_id=r[0], amount=r[1])
        )


@router.get("/crash")
async def crash() -> dict[str, str]:
    raise RuntimeError("a bug")


SPEC = ServiceSpec(name="example", settings_cls=ServiceSettings, routers=[router], migrations=MIGRATIONS)


def settings_for(database: DatabaseTarget) -> ServiceSettings:
    return ServiceSettings(
        database_url=database.url, database_schema=database.schema, kafka_bootstrap_servers="127.0.0.1:1"
    )


def _is_error(body: Any) -> bool:
    return set(body) == {"error", "message", "details"} and isinstance(body["details"], list) and body["message"]


async def test_every_error_has_one_shape_and_unknown_routes_and_methods_are_told(database: DatabaseTarget) -> None:
    async with service_client(create_app(SPEC, settings_for(database))) as client:
        unknown = await client.get("/nowhere")
        assert unknown.status_code == 404 and _is_error(unknown.json()) and unknown.json()["error"] == "not_found"
        # /things has only POST: a GET is 405 with every method of the path, OPTIONS lists them
        wrong = await client.delete("/things")
        assert wrong.status_code == 405 and _is_error(wrong.json())
        assert wrong.headers["allow"] == "OPTIONS, POST"
        options = await client.options("/things")
        assert options.status_code == 204 and options.headers["allow"] == "OPTIONS, POST"
        assert (await client.options("/healthz")).headers["allow"] == "GET, OPTIONS"
        invalid = await client.post("/things", json={"id": "x"})
        assert invalid.status_code == 422 and _is_error(invalid.json())
        assert {tuple(d["loc"]) for d in invalid.json()["details"]} >= {("body", "count"), ("body", "at")}
        broken = await client.post("/things", content=b"{not json", headers={"content-type": "application/json"})
        assert broken.status_code == 422 and _is_error(broken.json())
        crashed = await client.get("/crash")
        assert crashed.status_code == 500 and _is_error(crashed.json()) and "a bug" not in crashed.text
        bad_length = await client.post("/things", content=b"{}", headers={"content-length": "x"})
        assert bad_length.status_code == 400 and _is_error(bad_length.json())


async def test_a_url_belongs_to_its_most_literal_path(database: DatabaseTarget) -> None:
    """`/things/export` and `/things/naive` are paths of their own (GET only), not things called
    "export" or "naive": a PATCH there is a 405 telling their methods, not a PATCH of a thing."""
    async with service_client(create_app(SPEC, settings_for(database))) as client:
        assert (await client.get("/things/export")).json() == {"export": "all"}
        assert (await client.get("/things/naive")).json()["count"] == 1
        assert (await client.get("/things/t1")).json() == {"thing": "t1"}
        assert (await client.patch("/things/t1")).json() == {"patched": "t1"}
        for path in ("/things/export", "/things/naive"):
            wrong = await client.patch(path)
            assert wrong.status_code == 405 and _is_error(wrong.json()), path
            assert wrong.headers["allow"] == "GET, OPTIONS", path
            assert (await client.options(path)).headers["allow"] == "GET, OPTIONS", path
        assert (await client.options("/things/t1")).headers["allow"] == "GET, OPTIONS, PATCH"
        assert (await client.delete("/things/t1")).headers["allow"] == "GET, OPTIONS, PATCH"


async def test_paging_is_bounded_and_counts(database: DatabaseTarget) -> None:
    app = create_app(SPEC, settings_for(database))
    async with service_client(app) as client:
        async with app.state.ctx.db.transaction() as session:
            for seq in range(5):
                await session.execute(entries.insert().values(account_id=f"a{seq}", amount=seq, seq=seq))
        page = (await client.get("/entries", params={"limit": 2, "offset": 1})).json()
        assert page == {
            "items": [{"account_id": "a1", "amount": 1}, {"account_id": "a2", "amount": 2}],
            "total": 5,
            "limit": 2,
            "offset": 1,
        }
        assert (await client.get("/entries", params={"offset": MAX_OFFSET})).json()["items"] == []
        for params in ({"offset": "9223372036854775808"}, {"offset": -1}, {"limit": 0}, {"limit": 501}):
            refused = await client.get("/entries", params=params)
            assert refused.status_code == 422 and _is_error(refused.json()), params


async def test_ids_times_numbers_and_enums_in_one_form(database: DatabaseTarget) -> None:
    thing = {
        "id": "6F0C2A8E4B5D4C0E9A1B2C3D4E5F6A7B",
        "count": 3,
        "weight": 2.5,
        "colour": "DARK_RED",
        "at": "2026-03-01T10:00:00+01:00",
    }
    async with service_client(create_app(SPEC, settings_for(database))) as client:
        created = await client.post("/things", json=thing)
        assert created.status_code == 201, created.text
        assert created.json() == {
            "id": "6f0c2a8e-4b5d-4c0e-9a1b-2c3d4e5f6a7b",
            "count": 3,
            "weight": 2.5,
            "colour": "dark_red",
            "at": "2026-03-01T09:00:00Z",
        }
        for field, value in (("count", True), ("count", "3"), ("weight", False), ("colour", "purple")):
            refused = await client.post("/things", json={**thing, field: value})
            assert refused.status_code == 422, (field, value)
            assert refused.json()["details"][0]["loc"] == ["body", field]
        # a stored time without its zone (SQLite gives them back so) is answered in UTC with Z
        assert (await client.get("/things/naive")).json()["at"] == "2026-01-02T00:00:00Z"
        doc = (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ErrorBody" in schemas
    post = doc["paths"]["/things"]["post"]["responses"]
    assert set(post) >= {"201", "400", "401", "403", "404", "409", "413", "422", "429"}
    assert post["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    thing_schema = schemas["Thing-Output"] if "Thing-Output" in schemas else schemas["Thing"]
    assert thing_schema["properties"]["at"]["format"] == "date-time"
    assert thing_schema["properties"]["id"]["format"] == "uuid"
    offset = next(p for p in doc["paths"]["/entries"]["get"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == MAX_OFFSET
    assert "401" not in doc["paths"]["/healthz"]["get"]["responses"]


def test_a_date_is_written_yyyy_mm_dd_only() -> None:
    """``format: date`` means YYYY-MM-DD: a number (seconds since 1970) or a timestamp is refused."""
    adapter = TypeAdapter(IsoDate)
    assert adapter.validate_python("2026-12-04") == date(2026, 12, 4)
    assert adapter.validate_json('"2026-12-04"') == date(2026, 12, 4)
    assert adapter.validate_python(date(2026, 12, 4)) == date(2026, 12, 4)
    for wrong in ("0", 0, "1700000000", "20261204", "2026-12-04T00:00:00", datetime(2026, 12, 4), "2026-13-01", True):
        with pytest.raises(ValidationError):
            adapter.validate_python(wrong)
    assert adapter.json_schema() == {"format": "date", "type": "string"}


def test_snake_case_reads_the_former_vocabulary_spellings() -> None:
    from distretto_shared.casing import snake_case

    assert [snake_case(v) for v in ("SIGNED", "associatedPartner", "thirdParty", "third_party", " PU ")] == [
        "signed",
        "associated_partner",
        "third_party",
        "third_party",
        "pu",
    ]


def test_a_stored_hex_id_is_found_by_either_form_and_documented_as_uuid() -> None:
    adapter = TypeAdapter(HexId)
    dashed = "6f0c2a8e-4b5d-4c0e-9a1b-2c3d4e5f6a7b"
    for given in (dashed, dashed.upper(), "6f0c2a8e4b5d4c0e9a1b2c3d4e5f6a7b", "6F0C2A8E4B5D4C0E9A1B2C3D4E5F6A7B"):
        assert adapter.validate_python(given) == "6f0c2a8e4b5d4c0e9a1b2c3d4e5f6a7b", given
    # anything else goes on unchanged: the lookup finds nothing and answers 404
    for other in ("k1", "not-an-id", "6f0c2a8e4b5d4c0e9a1b2c3d4e5f6a7", "g" * 32):
        assert adapter.validate_python(other) == other
    with pytest.raises(ValidationError):
        adapter.validate_python(7)
    assert adapter.json_schema() == {"type": "string", "format": "uuid"}
