"""Use cases of mailing lists."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, func, select

from distretto_shared.conventions import hex_id
from distretto_shared.db import CoreUnitOfWork
from distretto_shared.web import Conflict, Invalid, NotFound, PageParams
from newsletter.config import Settings
from newsletter.context import Ctx
from newsletter.lists.models import MailingList, MailingListCreate, MailingListPublic
from newsletter.subscribers.models import Subscription

# -- lists -----------------------------------------------------------------------


async def create_list(ctx: Ctx, data: MailingListCreate) -> MailingListPublic:
    async with ctx.db.transaction() as session:
        if (await session.execute(select(MailingList).where(MailingList.slug == data.slug))).first():
            raise Conflict(f"a list with slug {data.slug!r} already exists")
        row = MailingList(**data.model_dump())
        session.add(row)
    return MailingListPublic(**row.model_dump())


async def _list_counts(session: AsyncSession, ids: list[str]) -> dict[str, int]:
    rows = await session.execute(
        select(Subscription.list_id, func.count())
        .where(col(Subscription.list_id).in_(ids), Subscription.status == "confirmed")
        .group_by(Subscription.list_id)
    )
    return {r[0]: r[1] for r in rows}


async def list_lists(ctx: Ctx, page: PageParams) -> tuple[list[MailingListPublic], int]:
    async with ctx.db.read() as session:
        total = (await session.execute(select(func.count()).select_from(MailingList))).scalar_one()
        rows = (
            (
                await session.execute(
                    select(MailingList)
                    .order_by(col(MailingList.created_at), col(MailingList.id))
                    .offset(page.offset)
                    .limit(page.limit)
                )
            )
            .scalars()
            .all()
        )
        counts = await _list_counts(session, [r.id for r in rows])
    return [MailingListPublic(**r.model_dump(), subscribers=counts.get(r.id, 0)) for r in rows], total


async def get_list(ctx: Ctx, list_id: str) -> MailingListPublic:
    async with ctx.db.read() as session:
        row = await find_list(session, list_id)
        counts = await _list_counts(session, [row.id])
    return MailingListPublic(**row.model_dump(), subscribers=counts.get(row.id, 0))


async def find_list(session: AsyncSession, ref: str) -> MailingList:
    """A list by its id (either form, docs/api-conventions.md "Ids") or its slug."""
    row = (
        await session.execute(
            select(MailingList)
            .where(sa.or_(col(MailingList.id) == hex_id(ref), col(MailingList.slug) == ref))
            .order_by((col(MailingList.id) == hex_id(ref)).desc())  # an id before a slug spelt like one
            .limit(1)
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no list {ref!r}")
    return row


async def resolve_lists(session: AsyncSession, refs: Sequence[str], *, public_only: bool = False) -> list[MailingList]:
    """The lists named by ids (either form) or slugs (422 for an unknown one)."""
    ids = [hex_id(r) for r in refs]
    rows = (
        (
            await session.execute(
                select(MailingList).where(sa.or_(col(MailingList.id).in_(ids), col(MailingList.slug).in_(refs)))
            )
        )
        .scalars()
        .all()
    )
    _refuse_unknown(refs, rows)
    if public_only:
        private = [r.slug for r in rows if r.visibility != "public"]
        if private:
            raise Invalid(f"list(s) not open to sign-up: {', '.join(private)}", details={"lists": private})
    return list(rows)


_LIST = MailingList.__table__  # type: ignore[attr-defined]
_LIST_IDS = sa.select(_LIST.c.id, _LIST.c.slug).where(
    sa.or_(_LIST.c.id.in_(sa.bindparam("ids", expanding=True)), _LIST.c.slug.in_(sa.bindparam("refs", expanding=True)))
)
"""The lists with these ids or slugs (built once: the same query as :func:`resolve_lists`, without ORM objects)."""


async def resolve_list_ids(uow: CoreUnitOfWork, refs: Sequence[str]) -> list[str]:
    """:func:`resolve_lists` in a Core unit of work: the ids of the lists named (422 for an unknown one)."""
    rows = (await uow.execute(_LIST_IDS, {"ids": [hex_id(r) for r in refs], "refs": list(refs)})).all()
    _refuse_unknown(refs, rows)
    return [r.id for r in rows]


def _refuse_unknown(refs: Sequence[str], rows: Sequence[MailingList] | Sequence[sa.Row[tuple[str, str]]]) -> None:
    known = {r.id for r in rows} | {r.slug for r in rows}
    missing = [r for r in refs if r not in known and hex_id(r) not in known]
    if missing:
        raise Invalid(f"unknown list(s): {', '.join(missing)}", details={"lists": missing})


async def ensure_members_list(session: AsyncSession, settings: Settings) -> MailingList:
    """The private list of member contacts who consented (created on first use)."""
    row = (
        await session.execute(select(MailingList).where(MailingList.slug == settings.members_list_slug))
    ).scalar_one_or_none()
    if row is None:
        row = MailingList(
            slug=settings.members_list_slug,
            name="Member organisations",
            description="Contacts of member organisations who consented to the newsletter",
            visibility="private",
        )
        session.add(row)
        await session.flush()
    return row
