"""HTTP routes of the people of the register."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from distretto_shared.conventions import Id
from distretto_shared.web import Page
from membership.common import CallerCtx, Paging
from membership.contacts import service
from membership.contacts.models import (
    ContactCreate,
    ContactDataExport,
    ContactPersonalData,
    ContactPublic,
    ContactUpdate,
)

router = APIRouter()


@router.post(
    "/organisations/{organisation_id}/contacts", status_code=201, response_model=ContactPublic, tags=["contacts"]
)
async def add_contact(ctx: CallerCtx, organisation_id: Id, body: ContactCreate) -> ContactPublic:
    """Add a person to an organisation."""
    return await service.add_contact(ctx, organisation_id, body)


@router.get("/organisations/{organisation_id}/contacts", response_model=Page[ContactPublic], tags=["contacts"])
async def list_organisation_contacts(ctx: CallerCtx, organisation_id: Id, page: Paging) -> Page[ContactPublic]:
    """The people of one organisation."""
    return await service.list_contacts(ctx, page, organisation_id=organisation_id)


@router.get("/contacts", response_model=Page[ContactPublic], tags=["contacts"])
async def list_contacts(ctx: CallerCtx, page: Paging, consent_newsletter: bool | None = None) -> Page[ContactPublic]:
    """Every contact (erased ones excluded), optionally only those who accept the newsletter."""
    return await service.list_contacts(ctx, page, consent_newsletter=consent_newsletter)


@router.get("/contacts/{contact_id}", response_model=ContactPublic, tags=["contacts"])
async def get_contact(ctx: CallerCtx, contact_id: Id) -> ContactPublic:
    """One contact."""
    return await service.get_contact(ctx, contact_id)


@router.get(
    "/contacts/{contact_id}/personal-data",
    response_model=ContactPersonalData,
    tags=["contacts"],
)
async def contact_personal_data(ctx: CallerCtx, contact_id: Id) -> ContactPersonalData:
    """A contact's name, address and phone, for the newsletter service (as ``service:newsletter``) and staff.

    Events carry no personal data; a service that needs it asks here. 404 once the contact is
    erased: the caller drops what it was about to do for them.
    """
    return await service.contact_personal_data(ctx, contact_id)


@router.get("/contacts/{contact_id}/export", response_model=ContactDataExport, tags=["contacts"])
async def export_contact(ctx: CallerCtx, contact_id: Id) -> Response:
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
async def update_contact(ctx: CallerCtx, contact_id: Id, body: ContactUpdate) -> ContactPublic:
    """Change a person's data or consent (``consent_source`` says where the consent came from)."""
    return await service.update_contact(ctx, contact_id, body)


@router.post("/contacts/{contact_id}/erase", response_model=ContactPublic, tags=["contacts"])
async def erase_contact(ctx: CallerCtx, contact_id: Id) -> ContactPublic:
    """GDPR erasure: the person's data is removed here and ContactErased tells the other services."""
    return await service.erase_contact(ctx, contact_id)
