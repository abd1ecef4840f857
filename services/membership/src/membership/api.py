"""HTTP routes of the register: request → use case → response, nothing else."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from distretto_shared.context import Context, public_request_context, request_context
from distretto_shared.web import DomainError, Page, PageParams, page_params
from membership import service
from membership.config import Settings
from membership.domain import (
    LifecycleAction,
    MembershipStatus,
    OrganisationKind,
    OrganisationOrder,
    Sector,
    SizeClass,
)
from membership.models import (
    ApproveRequest,
    ContactCreate,
    ContactDataExport,
    ContactPersonalData,
    ContactPublic,
    ContactUpdate,
    DistrictFiguresPublic,
    FeePlanCreate,
    FeePlanPublic,
    ImportResult,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
    ReasonRequest,
    RenewalCreate,
    RenewalPublic,
    StatusChangePublic,
    YearlyFiguresCreate,
    YearlyFiguresPublic,
)

router = APIRouter()


Paging = Annotated[PageParams, Depends(page_params)]
Year = Annotated[int, Path(ge=1900, le=2100, description="Calendar year of the figures")]


Ctx = Annotated[Context[Settings], Depends(request_context)]
"""The caller, the database and the settings (see docs/service-guide.md); anonymous callers get 401."""
PublicCtx = Annotated[Context[Settings], Depends(public_request_context)]
"""The same for the public routes, which anonymous callers reach too."""


def organisation_filter(
    kind: OrganisationKind | None = None,
    sector: Sector | None = None,
    status: MembershipStatus | None = None,
    province: Annotated[str | None, Query(max_length=50)] = None,
    size_class: SizeClass | None = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in name, description, city, keywords")] = None,
) -> service.OrganisationFilter:
    """Filters shared by the list and the export."""
    return service.OrganisationFilter(kind, sector, status, province, size_class, q)


Filter = Annotated[service.OrganisationFilter, Depends(organisation_filter)]


# -- Organisations ---------------------------------------------------------------


@router.post("/organisations", status_code=201, response_model=OrganisationPublic, tags=["organisations"])
async def create_organisation(ctx: Ctx, body: OrganisationCreate) -> OrganisationPublic:
    """Enter an organisation in the register (status ``applied``)."""
    return await service.create_organisation(ctx, body)


@router.get("/organisations", response_model=Page[OrganisationPublic], tags=["organisations"])
async def list_organisations(
    ctx: Ctx,
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
async def export_organisations(ctx: Ctx, flt: Filter) -> Response:
    """The (filtered) register as CSV."""
    text = await service.export_csv(ctx, flt)
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
async def import_organisations(ctx: Ctx, request: Request) -> ImportResult:
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
    return await service.import_csv(ctx, await _uploaded_csv(request))


@router.get("/organisations/{organisation_id}", response_model=OrganisationPublic, tags=["organisations"])
async def get_organisation(ctx: Ctx, organisation_id: str) -> OrganisationPublic:
    """One organisation with its latest figures and the lifecycle actions open to it."""
    return await service.get_organisation(ctx, organisation_id)


@router.patch("/organisations/{organisation_id}", response_model=OrganisationPublic, tags=["organisations"])
async def update_organisation(ctx: Ctx, organisation_id: str, body: OrganisationUpdate) -> OrganisationPublic:
    """Change an organisation's data (only the fields sent)."""
    return await service.update_organisation(ctx, organisation_id, body)


# -- Yearly figures -------------------------------------------------------------


@router.put("/organisations/{organisation_id}/figures/{year}", response_model=YearlyFiguresPublic, tags=["figures"])
async def set_figures(ctx: Ctx, organisation_id: str, year: Year, body: YearlyFiguresCreate) -> YearlyFiguresPublic:
    """Record or correct an organisation's figures for a year."""
    return await service.set_figures(ctx, organisation_id, year, body)


@router.get("/organisations/{organisation_id}/figures", response_model=list[YearlyFiguresPublic], tags=["figures"])
async def list_figures(ctx: Ctx, organisation_id: str) -> list[YearlyFiguresPublic]:
    """Every year's figures of an organisation, latest first (a few rows: not paginated)."""
    return await service.list_figures(ctx, organisation_id)


@router.get("/figures", response_model=DistrictFiguresPublic, tags=["figures"])
async def district_figures(ctx: PublicCtx) -> DistrictFiguresPublic:
    """The district's live aggregate figures (public)."""
    return await service.figures_now(ctx)


# -- Lifecycle --------------------------------------------------------------------


@router.post("/organisations/{organisation_id}/approve", response_model=OrganisationPublic, tags=["lifecycle"])
async def approve(
    ctx: Ctx, organisation_id: str, body: Annotated[ApproveRequest | None, Body()] = None
) -> OrganisationPublic:
    """applied → active."""
    return await service.approve(ctx, organisation_id, body or ApproveRequest())


async def _step(
    ctx: service.Ctx, organisation_id: str, action: LifecycleAction, body: ReasonRequest | None
) -> OrganisationPublic:
    return await service.change_status(ctx, organisation_id, action, (body or ReasonRequest()).reason)


Reason = Annotated[ReasonRequest | None, Body()]


@router.post("/organisations/{organisation_id}/reject", response_model=OrganisationPublic, tags=["lifecycle"])
async def reject(ctx: Ctx, organisation_id: str, body: Reason = None) -> OrganisationPublic:
    """applied → rejected."""
    return await _step(ctx, organisation_id, LifecycleAction.reject, body)


@router.post("/organisations/{organisation_id}/suspend", response_model=OrganisationPublic, tags=["lifecycle"])
async def suspend(ctx: Ctx, organisation_id: str, body: Reason = None) -> OrganisationPublic:
    """active → suspended."""
    return await _step(ctx, organisation_id, LifecycleAction.suspend, body)


@router.post("/organisations/{organisation_id}/reinstate", response_model=OrganisationPublic, tags=["lifecycle"])
async def reinstate(ctx: Ctx, organisation_id: str, body: Reason = None) -> OrganisationPublic:
    """suspended → active."""
    return await _step(ctx, organisation_id, LifecycleAction.reinstate, body)


@router.post("/organisations/{organisation_id}/lapse", response_model=OrganisationPublic, tags=["lifecycle"])
async def lapse(ctx: Ctx, organisation_id: str, body: Reason = None) -> OrganisationPublic:
    """active → lapsed (staff): the renewal will not be paid. The scheduled scan does the same on its
    own once a renewal is overdue past the grace period; a renewal brings the member back."""
    return await _step(ctx, organisation_id, LifecycleAction.lapse, body)


@router.post("/organisations/{organisation_id}/leave", response_model=OrganisationPublic, tags=["lifecycle"])
async def leave(ctx: Ctx, organisation_id: str, body: Reason = None) -> OrganisationPublic:
    """any → left."""
    return await _step(ctx, organisation_id, LifecycleAction.leave, body)


@router.post(
    "/organisations/{organisation_id}/renewals", status_code=201, response_model=RenewalPublic, tags=["lifecycle"]
)
async def renew(ctx: Ctx, organisation_id: str, body: Annotated[RenewalCreate | None, Body()] = None) -> RenewalPublic:
    """A paid renewal: extends an active membership, reactivates a lapsed one."""
    return await service.renew(ctx, organisation_id, body or RenewalCreate())


@router.get("/organisations/{organisation_id}/renewals", response_model=Page[RenewalPublic], tags=["lifecycle"])
async def list_renewals(ctx: Ctx, organisation_id: str, page: Paging) -> Page[RenewalPublic]:
    """An organisation's renewals, latest first."""
    return await service.list_renewals(ctx, organisation_id, page)


@router.get("/organisations/{organisation_id}/history", response_model=Page[StatusChangePublic], tags=["lifecycle"])
async def history(ctx: Ctx, organisation_id: str, page: Paging) -> Page[StatusChangePublic]:
    """The organisation's lifecycle steps, oldest first."""
    return await service.history(ctx, organisation_id, page)


@router.post("/fee-plans", status_code=201, response_model=FeePlanPublic, tags=["lifecycle"])
async def create_fee_plan(ctx: Ctx, body: FeePlanCreate) -> FeePlanPublic:
    """A new fee plan (amount, period, grace days)."""
    return await service.create_fee_plan(ctx, body)


@router.get("/fee-plans", response_model=Page[FeePlanPublic], tags=["lifecycle"])
async def list_fee_plans(ctx: Ctx, page: Paging) -> Page[FeePlanPublic]:
    """Fee plans by name."""
    return await service.list_fee_plans(ctx, page)


# -- Contacts ---------------------------------------------------------------------


@router.post(
    "/organisations/{organisation_id}/contacts", status_code=201, response_model=ContactPublic, tags=["contacts"]
)
async def add_contact(ctx: Ctx, organisation_id: str, body: ContactCreate) -> ContactPublic:
    """Add a person to an organisation."""
    return await service.add_contact(ctx, organisation_id, body)


@router.get("/organisations/{organisation_id}/contacts", response_model=Page[ContactPublic], tags=["contacts"])
async def list_organisation_contacts(ctx: Ctx, organisation_id: str, page: Paging) -> Page[ContactPublic]:
    """The people of one organisation."""
    return await service.list_contacts(ctx, page, organisation_id=organisation_id)


@router.get("/contacts", response_model=Page[ContactPublic], tags=["contacts"])
async def list_contacts(ctx: Ctx, page: Paging, consent_newsletter: bool | None = None) -> Page[ContactPublic]:
    """Every contact (erased ones excluded), optionally only those who accept the newsletter."""
    return await service.list_contacts(ctx, page, consent_newsletter=consent_newsletter)


@router.get("/contacts/{contact_id}", response_model=ContactPublic, tags=["contacts"])
async def get_contact(ctx: Ctx, contact_id: str) -> ContactPublic:
    """One contact."""
    return await service.get_contact(ctx, contact_id)


@router.get(
    "/contacts/{contact_id}/personal-data",
    response_model=ContactPersonalData,
    tags=["contacts"],
)
async def contact_personal_data(ctx: Ctx, contact_id: str) -> ContactPersonalData:
    """A contact's name, address and phone, for the newsletter service (as ``service:newsletter``) and staff.

    Events carry no personal data; a service that needs it asks here. 404 once the contact is
    erased: the caller drops what it was about to do for them.
    """
    return await service.contact_personal_data(ctx, contact_id)


@router.get("/contacts/{contact_id}/export", response_model=ContactDataExport, tags=["contacts"])
async def export_contact(ctx: Ctx, contact_id: str) -> Response:
    """GDPR access and portability (art. 15, 20): everything the register holds about the person, as JSON.

    Staff, or a member for its own organisation's contacts; served as a download.
    """
    export = await service.export_contact(ctx, contact_id)
    return Response(
        export.model_dump_json(indent=2),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="contact-{export.contact.id}.json"'},
    )


@router.patch("/contacts/{contact_id}", response_model=ContactPublic, tags=["contacts"])
async def update_contact(ctx: Ctx, contact_id: str, body: ContactUpdate) -> ContactPublic:
    """Change a person's data or consent (``consent_source`` says where the consent came from)."""
    return await service.update_contact(ctx, contact_id, body)


@router.post("/contacts/{contact_id}/erase", response_model=ContactPublic, tags=["contacts"])
async def erase_contact(ctx: Ctx, contact_id: str) -> ContactPublic:
    """GDPR erasure: the person's data is removed here and ContactErased tells the other services."""
    return await service.erase_contact(ctx, contact_id)
