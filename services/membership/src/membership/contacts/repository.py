"""Queries of the contacts, and who may see a person (the organisation's own members and staff; 404 to others)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from distretto_shared.db import load
from distretto_shared.web import NotFound
from membership.common import Ctx
from membership.contacts.models import Contact


async def contact_of(ctx: Ctx, session: AsyncSession, contact_id: str) -> Contact:
    """A person, for the people of their own organisation and staff (404 for everyone else)."""
    contact = await load(session, Contact, contact_id)
    if contact is None or not ctx.acts_for(contact.organisation_id):
        raise NotFound(f"contact {contact_id} does not exist")
    return contact


async def email_taken(session: AsyncSession, organisation_id: str, email: str, exclude_id: str | None = None) -> bool:
    """True when another contact of the organisation has this email (case-insensitive)."""
    query = select(col(Contact.id)).where(
        col(Contact.organisation_id) == organisation_id, func.lower(Contact.email) == email.strip().lower()
    )
    if exclude_id:
        query = query.where(col(Contact.id) != exclude_id)
    return (await session.execute(query.limit(1))).first() is not None


def not_erased(*where: Any) -> Select[Any]:
    """The contacts not erased, narrowed by ``where``."""
    return select(Contact).where(col(Contact.erased_at).is_(None), *where)
