"""Use cases of the people of the register: add, read, list, change, export and erase contacts."""

from __future__ import annotations

from typing import Any

from sqlmodel import col

from distretto_shared.context import NotAllowed
from distretto_shared.contracts import membership as contracts
from distretto_shared.conventions import paginate
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, Invalid, NotFound, Page, PageParams
from membership.common import Ctx
from membership.contacts import repository
from membership.contacts.domain import email_sha256
from membership.contacts.models import (
    Contact,
    ContactCreate,
    ContactDataExport,
    ContactPersonalData,
    ContactPublic,
    ContactUpdate,
)
from membership.organisations import repository as organisations
from membership.tables import as_utc, fields, utcnow

PERSONAL_DATA_READERS = frozenset({"service:newsletter"})
"""Services that may read a contact's personal data (besides staff): the newsletter mails consenting contacts."""


def contact_public(contact: Contact) -> ContactPublic:
    """A contact as the API shows it."""
    data = fields(contact)
    for name in ("consent_newsletter_at", "consent_data_processing_at", "erased_at", "created_at", "updated_at"):
        data[name] = as_utc(data[name])
    return ContactPublic.model_validate(data)


def contact_reference(contact: Contact) -> contracts.ContactReference:
    """What goes on the shared topic: no name, email or phone (see the contract)."""
    return contracts.ContactReference(
        contact_id=contact.id,
        organisation_id=contact.organisation_id,
        email_sha256=email_sha256(contact.email or ""),
        consent_newsletter=contact.consent_newsletter,
        consent_data_processing=contact.consent_data_processing,
        language=contact.language,
    )


async def add_contact(ctx: Ctx, organisation_id: str, data: ContactCreate) -> ContactPublic:
    """Add a person to an organisation, recording when and where each consent was given."""
    async with ctx.db.transaction() as session:
        await organisations.own(ctx, session, organisation_id, "add contacts to this organisation")
        if await repository.email_taken(session, organisation_id, data.email):
            raise Conflict(f"{data.email} is already a contact of this organisation")
        now = utcnow()
        contact = Contact(organisation_id=organisation_id, **data.model_dump(exclude={"consent_source"}))
        if data.consent_newsletter:
            contact.consent_newsletter_at, contact.consent_newsletter_source = now, data.consent_source
        if data.consent_data_processing:
            contact.consent_data_processing_at, contact.consent_data_processing_source = now, data.consent_source
        session.add(contact)
        add_event(
            session,
            contracts.ContactAdded(
                contact_id=contact.id, organisation_id=organisation_id, contact=contact_reference(contact)
            ),
            source=ctx.source,
        )
    return contact_public(contact)


async def get_contact(ctx: Ctx, contact_id: str) -> ContactPublic:
    """One contact."""
    async with ctx.db.read() as session:
        return contact_public(await repository.contact_of(ctx, session, contact_id))


async def export_contact(ctx: Ctx, contact_id: str) -> ContactDataExport:
    """Everything the register holds about one person, as JSON (GDPR art. 15 access, art. 20 portability).

    Staff, or a member for its own organisation's contacts (404 for everyone else, as for the
    contact itself). An erased contact's export shows what is left: ids and dates, nothing personal.
    """
    async with ctx.db.read() as session:
        contact = await repository.contact_of(ctx, session, contact_id)
        org = await organisations.get(session, contact.organisation_id)
    reference = contact_reference(contact)
    shared: dict[str, Any] = (
        {}
        if contact.erased_at is not None
        else {
            "topic": contracts.CONTACT_TOPIC.name,
            "fields": reference.model_dump(mode="json"),
            "note": "ids, consents, language and the SHA-256 of the lower-cased email address; "
            "the newsletter service reads name and address from the register when it mails a consenting contact",
        }
    )
    return ContactDataExport(
        exported_at=utcnow(),
        controller="Distretto membership register",
        contact=contact_public(contact),
        organisation={"id": org.id, "name": org.name},
        shared_with_other_services=shared,
    )


async def contact_personal_data(ctx: Ctx, contact_id: str) -> ContactPersonalData:
    """A contact's personal data for a service that needs it (the newsletter); 404 once erased.

    Staff and the services in ``PERSONAL_DATA_READERS`` only (403 for everyone else, members of
    the contact's organisation included: they read their contacts through ``GET /contacts/{id}``).
    """
    if not (ctx.sees_everything or ctx.principal.id in PERSONAL_DATA_READERS):
        raise NotAllowed("a contact's personal data is for the newsletter service and staff only")
    async with ctx.db.read() as session:
        contact = await session.get(Contact, contact_id)
        if contact is None or contact.erased_at is not None:
            raise NotFound(f"contact {contact_id} does not exist (or was erased)")
        return ContactPersonalData(
            contact_id=contact.id,
            organisation_id=contact.organisation_id,
            first_name=contact.first_name,
            last_name=contact.last_name,
            email=contact.email or "",
            phone=contact.phone,
            role=contact.role,
            language=contact.language,
            consent_newsletter=contact.consent_newsletter,
        )


async def list_contacts(
    ctx: Ctx,
    page: PageParams,
    *,
    organisation_id: str | None = None,
    consent_newsletter: bool | None = None,
) -> Page[ContactPublic]:
    """Contacts (of one organisation, or all), erased ones excluded; a member sees only its own."""
    where: list[Any] = []
    async with ctx.db.read() as session:
        if organisation_id is not None:
            await organisations.own(ctx, session, organisation_id, "see this organisation's contacts")
            where.append(col(Contact.organisation_id) == organisation_id)
        elif not ctx.sees_everything:
            ctx.require_member_or_staff("list contacts")
            where.append(col(Contact.organisation_id) == ctx.own_organisation())
        if consent_newsletter is not None:
            where.append(col(Contact.consent_newsletter) == consent_newsletter)
        return await paginate(  # type: ignore[no-any-return]
            session,
            repository.not_erased(*where),
            page,
            order_by=[col(Contact.last_name), col(Contact.first_name), col(Contact.id)],
            map=contact_public,
        )


async def update_contact(ctx: Ctx, contact_id: str, patch: ContactUpdate) -> ContactPublic:
    """Change a person's data or consent; a consent change records its new time and source."""
    changes = patch.model_dump(exclude_unset=True, exclude={"consent_source"})
    async with ctx.db.transaction() as session:
        contact = await repository.contact_of(ctx, session, contact_id)
        if contact.erased_at is not None:
            raise Conflict(f"contact {contact_id} was erased")
        for required in (
            "first_name",
            "last_name",
            "email",
            "role",
            "language",
            "consent_newsletter",
            "consent_data_processing",
        ):
            if required in changes and changes[required] is None:
                raise Invalid(f"{required} cannot be null")
        if "email" in changes and await repository.email_taken(
            session, contact.organisation_id, changes["email"], contact.id
        ):
            raise Conflict(f"{changes['email']} is already a contact of this organisation")
        changed = {k: v for k, v in changes.items() if getattr(contact, k) != v}
        if not changed:
            return contact_public(contact)
        now = utcnow()
        for name, value in changed.items():
            setattr(contact, name, value)
        for consent in ("consent_newsletter", "consent_data_processing"):
            if consent in changed:
                setattr(contact, f"{consent}_at", now)
                setattr(contact, f"{consent}_source", patch.consent_source)
        contact.updated_at = now
        add_event(
            session,
            contracts.ContactUpdated(
                contact_id=contact.id, organisation_id=contact.organisation_id, contact=contact_reference(contact)
            ),
            source=ctx.source,
        )
    return contact_public(contact)


async def erase_contact(ctx: Ctx, contact_id: str) -> ContactPublic:
    """GDPR erasure: remove the person's data and tell the other services (by id and email hash)."""
    async with ctx.db.transaction() as session:
        contact = await repository.contact_of(ctx, session, contact_id)
        if contact.erased_at is not None:
            raise Conflict(f"contact {contact_id} was already erased")
        digest = email_sha256(contact.email or "")
        now = utcnow()
        contact.first_name = contact.last_name = contact.role = ""
        contact.email = contact.phone = None
        contact.consent_newsletter = contact.consent_data_processing = False
        contact.consent_newsletter_at = contact.consent_data_processing_at = None
        contact.consent_newsletter_source = contact.consent_data_processing_source = None
        contact.erased_at = contact.updated_at = now
        ctx.db.request_scrub(session)
        add_event(
            session,
            contracts.ContactErased(
                contact_id=contact.id, organisation_id=contact.organisation_id, email_sha256=digest
            ),
            source=ctx.source,
        )
    return contact_public(contact)
