"""HTTP routes of the register: request → use case → response, nothing else."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from distretto_shared.conventions import Id
from distretto_shared.web import DomainError, Page
from membership.common import CallerCtx, Paging
from membership.figures.domain import SizeClass
from membership.lifecycle.domain import MembershipStatus
from membership.organisations import service, spreadsheet
from membership.organisations.domain import OrganisationKind, OrganisationOrder, Sector
from membership.organisations.models import ImportResult, OrganisationCreate, OrganisationPublic, OrganisationUpdate
from membership.organisations.repository import OrganisationFilter

router = APIRouter()


async def organisation_filter(
    kind: OrganisationKind | None = None,
    sector: Sector | None = None,
    status: MembershipStatus | None = None,
    province: Annotated[str | None, Query(max_length=50)] = None,
    size_class: SizeClass | None = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in name, description, city, keywords")] = None,
) -> OrganisationFilter:
    """Filters shared by the list and the export."""
    return OrganisationFilter(kind, sector, status, province, size_class, q)


Filter = Annotated[OrganisationFilter, Depends(organisation_filter)]


@router.post("/organisations", status_code=201, response_model=OrganisationPublic, tags=["organisations"])
async def create_organisation(ctx: CallerCtx, body: OrganisationCreate) -> OrganisationPublic:
    """Enter an organisation in the register (status ``applied``)."""
    return await service.create_organisation(ctx, body)


@router.get("/organisations", response_model=Page[OrganisationPublic], tags=["organisations"])
async def list_organisations(
    ctx: CallerCtx,
    flt: Filter,
    page: Paging,
    sort: Annotated[
        OrganisationOrder,
        Query(description="Column to sort on, `-` in front for descending; ties by name, then id"),
    ] = OrganisationOrder.name,
) -> Page[OrganisationPublic]:
    """The register, filtered, sorted across all pages, and paginated."""
    return await service.list_organisations(ctx, flt, page, sort)


@router.get(
    "/organisations/export",
    tags=["organisations"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_organisations(ctx: CallerCtx, flt: Filter) -> Response:
    """The (filtered) register as CSV."""
    text = await spreadsheet.export_csv(ctx, flt)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="organisations.csv"'},
    )


IMPORT_BODY = {
    "required": True,
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary", "description": "the CSV file"}},
                "required": ["file"],
            }
        },
    },
}


async def _uploaded_csv(request: Request) -> bytes:
    """The CSV of an import: the body itself, or the file of a browser's ``multipart/form-data`` form."""
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        try:
            async with request.form(max_files=1, max_fields=10) as form:
                files = [v for v in form.values() if isinstance(v, UploadFile)]
                if not files:
                    raise DomainError("the form has no file: send the CSV as its file field")
                return await files[0].read()
        except MultiPartException as exc:
            raise DomainError(f"the form could not be read: {exc.message}") from exc
    return await request.body()


@router.post(
    "/organisations/import",
    status_code=201,
    response_model=ImportResult,
    tags=["organisations"],
    openapi_extra={"requestBody": IMPORT_BODY},
)
async def import_organisations(ctx: CallerCtx, request: Request) -> ImportResult:
    """Import organisations from CSV: every row or none.

    The CSV is the body (``Content-Type: text/csv``) or the file of a ``multipart/form-data``
    upload (a browser's file form). Columns: name, kind (required), sectors, address, postcode,
    city, province, country, website, vat_number, ateco_code, description, competences, keywords
    (lists separated by ``|``), optionally year, staff, rd_staff, turnover_eur, lab_m2, patents
    (a year's whole record: blank cells count as 0). The export's ``id`` column makes a row an
    update of that organisation (the file's columns replace its values), so an export imports back;
    its ``status`` and ``size_class`` columns are ignored.
    """
    ctx.require_staff("import organisations")  # before the body is read
    return await spreadsheet.import_csv(ctx, await _uploaded_csv(request))


@router.get("/organisations/{organisation_id}", response_model=OrganisationPublic, tags=["organisations"])
async def get_organisation(ctx: CallerCtx, organisation_id: Id) -> OrganisationPublic:
    """One organisation with its latest figures and the lifecycle actions open to it."""
    return await service.get_organisation(ctx, organisation_id)


@router.patch("/organisations/{organisation_id}", response_model=OrganisationPublic, tags=["organisations"])
async def update_organisation(ctx: CallerCtx, organisation_id: Id, body: OrganisationUpdate) -> OrganisationPublic:
    """Change an organisation's data (only the fields sent)."""
    return await service.update_organisation(ctx, organisation_id, body)
