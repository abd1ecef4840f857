"""Use cases of the consortium: participants (add, change, remove, read) and the read model of member
organisations kept from the membership events."""

from __future__ import annotations

from enum import Enum

from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.contracts.membership import OrganisationProfile
from distretto_shared.conventions import paginate
from distretto_shared.web import Conflict, Page, PageParams
from projects.consortium import domain
from projects.consortium.models import (
    MemberOrganisation,
    MemberOrganisationPublic,
    Participant,
    ParticipantCreate,
    ParticipantPublic,
    ParticipantUpdate,
)
from projects.consortium.repository import (
    UNLINKABLE_STATUSES,
    find_member,
    insert_participant,
    link,
    load_participant,
    participant_keys,
    unlink_organisation,
)
from projects.project.models import Project
from projects.project.repository import emit_updated, load_project, member_ids
from projects.tables import utcnow
from projects.unit import Ctx, no_nulls, unit_of_work


async def add_participant(ctx: Ctx, project_id: str, data: ParticipantCreate) -> ParticipantPublic:
    """Add a consortium participant; emits ParticipantAdded (+ ParticipantLinked, ProjectUpdated for a member)."""
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        if data.cordis_organisation_id:
            dup = await session.execute(
                select(Participant.id).where(
                    Participant.project_id == project_id,
                    Participant.cordis_organisation_id == data.cordis_organisation_id,
                )
            )
            if dup.first():
                raise Conflict(f"organisation {data.cordis_organisation_id} is already in this consortium")
        before = (project.foundation_role, await member_ids(session, project_id))
        participant, _ = await insert_participant(session, ctx.settings, project, data)
        await session.flush()
        if (project.foundation_role, await member_ids(session, project_id)) != before:
            await emit_updated(session, project)
        return ParticipantPublic.model_validate(participant.model_dump())


async def update_participant(
    ctx: Ctx, project_id: str, participant_id: str, data: ParticipantUpdate
) -> ParticipantPublic:
    """Change a participant; a participant not yet linked is matched again."""
    changes = data.model_dump(exclude_unset=True)
    no_nulls(changes, ("name", "role"))
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        participant = await load_participant(session, project_id, participant_id)
        before = await member_ids(session, project_id)
        for key, value in changes.items():
            setattr(participant, key, value.value if isinstance(value, Enum) else value)
        participant.updated_at = utcnow()
        participant_keys(ctx.settings, participant)
        if participant.organisation_id is None:
            member = await find_member(session, participant.vat_key, participant.name_key)
            if member:
                link(session, participant, project, member.organisation_id)
        await session.flush()
        if await member_ids(session, project_id) != before:
            await emit_updated(session, project)
        return ParticipantPublic.model_validate(participant.model_dump())


async def delete_participant(ctx: Ctx, project_id: str, participant_id: str) -> None:
    """Remove a participant; ProjectUpdated when the member organisations changed."""
    async with unit_of_work(ctx) as session:
        project = await load_project(session, project_id)
        participant = await load_participant(session, project_id, participant_id)
        before = await member_ids(session, project_id)
        await session.delete(participant)
        await session.flush()
        if await member_ids(session, project_id) != before:
            await emit_updated(session, project)


async def get_participant(ctx: Ctx, project_id: str, participant_id: str) -> ParticipantPublic:
    """One participant."""
    async with ctx.db.read() as session:
        return ParticipantPublic.model_validate(
            (await load_participant(session, project_id, participant_id)).model_dump()
        )


async def list_participants(
    ctx: Ctx,
    project_id: str,
    params: PageParams,
    *,
    role: str | None = None,
    country: str | None = None,
    linked: bool | None = None,
) -> Page[ParticipantPublic]:
    """A project's consortium, coordinator first."""
    stmt = select(Participant).where(Participant.project_id == project_id)
    if role:
        stmt = stmt.where(Participant.role == role)
    if country:
        stmt = stmt.where(Participant.country == country.upper())
    if linked is not None:
        col = Participant.organisation_id
        stmt = stmt.where(col.is_not(None) if linked else col.is_(None))  # type: ignore[union-attr]
    async with ctx.db.read() as session:
        await load_project(session, project_id)
        return await paginate(
            session,
            stmt,
            params,
            order_by=(Participant.role, Participant.name, Participant.id),
            map=lambda r: ParticipantPublic.model_validate(r.model_dump()),
        )


async def record_organisation(session: AsyncSession, profile: OrganisationProfile) -> int:
    """Keep an organisation's profile and link the participants it matches; returns how many were linked.

    Runs in the consumer's transaction. Idempotent: a participant already
    linked is left alone, so replaying an event links nothing new.
    """
    org = await session.get(MemberOrganisation, profile.organisation_id)
    if org is None:
        org = MemberOrganisation(organisation_id=profile.organisation_id, name=profile.name, name_key="")
        session.add(org)
    org.name = profile.name
    org.name_key = domain.normalise_name(profile.name)
    org.vat_number = profile.vat_number
    org.vat_key = domain.normalise_vat(profile.vat_number)
    org.kind = profile.kind
    org.country = (profile.country or "IT")[:2]
    org.status = profile.status
    org.updated_at = utcnow()
    await session.flush()
    if org.status in UNLINKABLE_STATUSES:
        return await unlink_organisation(session, org.organisation_id)
    conditions = [col(Participant.name_key) == org.name_key]
    if org.vat_key:
        conditions.append(col(Participant.vat_key) == org.vat_key)
    candidates = (
        (
            await session.execute(
                select(Participant)
                .where(Participant.organisation_id.is_(None), or_(*conditions))  # type: ignore[union-attr]
                .order_by(Participant.project_id, Participant.id)
            )
        )
        .scalars()
        .all()
    )
    touched: dict[str, Project] = {}
    for participant in candidates:
        project = touched.get(participant.project_id) or await load_project(session, participant.project_id)
        touched[project.id] = project
        link(session, participant, project, org.organisation_id)
    for project in touched.values():
        await emit_updated(session, project)
    return len(candidates)


async def record_organisation_status(session: AsyncSession, organisation_id: str, status: str) -> None:
    """Keep an organisation's membership status; one that left or was rejected is unlinked."""
    org = await session.get(MemberOrganisation, organisation_id)
    if org is None:
        return  # status of an organisation we never saw: nothing to keep
    org.status = status
    org.updated_at = utcnow()
    if status in UNLINKABLE_STATUSES:
        await unlink_organisation(session, organisation_id)


async def reconcile_links(ctx: Ctx) -> int:
    """Link every unlinked participant that matches a known organisation; returns how many were linked.

    The two linking paths (participant added, organisation event handled) each
    see only what the other committed: when both commit at the same moment
    neither sees the other. This periodic pass closes that window.
    """
    linkable = col(MemberOrganisation.status).not_in(UNLINKABLE_STATUSES)
    async with ctx.db.transaction() as session:
        candidates = (
            (
                await session.execute(
                    select(Participant)
                    .where(
                        col(Participant.organisation_id).is_(None),
                        or_(
                            col(Participant.vat_key).in_(
                                select(MemberOrganisation.vat_key).where(
                                    col(MemberOrganisation.vat_key).is_not(None), linkable
                                )
                            ),
                            col(Participant.name_key).in_(select(MemberOrganisation.name_key).where(linkable)),
                        ),
                    )
                    .order_by(col(Participant.project_id), col(Participant.id))
                )
            )
            .scalars()
            .all()
        )
        touched: dict[str, Project] = {}
        linked = 0
        for participant in candidates:
            member = await find_member(session, participant.vat_key, participant.name_key)
            if member is None:
                continue
            project = touched.get(participant.project_id) or await load_project(session, participant.project_id)
            touched[project.id] = project
            link(session, participant, project, member.organisation_id)
            linked += 1
        for project in touched.values():
            await emit_updated(session, project)
        return linked


async def list_organisations(ctx: Ctx, params: PageParams) -> Page[MemberOrganisationPublic]:
    """The organisations this service knows from the membership events."""
    async with ctx.db.read() as session:
        return await paginate(
            session,
            select(MemberOrganisation),
            params,
            order_by=(MemberOrganisation.name,),
            map=lambda r: MemberOrganisationPublic.model_validate(r.model_dump()),
        )
