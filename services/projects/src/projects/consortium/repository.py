"""Linking participants to member organisations: matching, linking, unlinking (inside a caller's
transaction)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from distretto_shared.contracts import projects as contracts
from distretto_shared.db import load
from distretto_shared.web import NotFound
from projects import metrics
from projects.config import Settings
from projects.consortium import domain
from projects.consortium.models import MemberOrganisation, Participant, ParticipantCreate
from projects.project.models import Project
from projects.project.repository import emit_updated, load_project
from projects.tables import utcnow
from projects.unit import emit, plain
from projects.vocabulary import FoundationRole, ParticipantRole

UNLINKABLE_STATUSES = frozenset({"rejected", "left"})
"""Organisations in these states are no longer matched to participants."""


def is_foundation(settings: Settings, name_key: str, vat_key: str | None) -> bool:
    if vat_key and vat_key in {domain.normalise_vat(v) for v in settings.foundation_vat_numbers}:
        return True
    return name_key in {domain.normalise_name(n) for n in settings.foundation_names}


async def find_member(session: AsyncSession, vat_key: str | None, name_key: str) -> MemberOrganisation | None:
    """The member organisation a participant is: by VAT number first, then by normalised name."""
    linkable = MemberOrganisation.status.not_in(UNLINKABLE_STATUSES)  # type: ignore[attr-defined]
    if vat_key:
        found = (
            (
                await session.execute(
                    select(MemberOrganisation)
                    .where(MemberOrganisation.vat_key == vat_key, linkable)
                    .order_by(MemberOrganisation.organisation_id)
                )
            )
            .scalars()
            .first()
        )
        if found:
            return found
    if not name_key:
        return None
    return (
        (
            await session.execute(
                select(MemberOrganisation)
                .where(MemberOrganisation.name_key == name_key, linkable)
                .order_by(MemberOrganisation.organisation_id)
            )
        )
        .scalars()
        .first()
    )


def link(session: AsyncSession, participant: Participant, project: Project, organisation_id: str) -> None:
    participant.organisation_id = organisation_id
    participant.updated_at = utcnow()
    emit(
        session,
        contracts.ParticipantLinked(
            project_id=project.id, participant_id=participant.id, organisation_id=organisation_id
        ),
    )
    metrics.PARTICIPANTS_LINKED.inc()


def participant_keys(settings: Settings, participant: Participant) -> None:
    participant.name_key = domain.normalise_name(participant.name)
    participant.vat_key = domain.normalise_vat(participant.vat_number)
    participant.is_foundation = is_foundation(settings, participant.name_key, participant.vat_key)


async def insert_participant(
    session: AsyncSession, settings: Settings, project: Project, data: ParticipantCreate
) -> tuple[Participant, bool]:
    """Insert a participant, link it if it is a member; returns (participant, linked). Emits Added (+ Linked)."""
    participant = Participant.model_validate({**plain(data.model_dump()), "project_id": project.id})
    participant_keys(settings, participant)
    session.add(participant)
    await session.flush()
    member = await find_member(session, participant.vat_key, participant.name_key)
    emit(
        session,
        contracts.ParticipantAdded(
            project_id=project.id,
            participant_id=participant.id,
            name=participant.name,
            role=participant.role,
            country=participant.country,
            organisation_id=member.organisation_id if member else None,
            ec_contribution=participant.ec_contribution,
        ),
    )
    if member:
        link(session, participant, project, member.organisation_id)
    if participant.is_foundation and project.foundation_role == FoundationRole.NONE:
        project.foundation_role = domain.foundation_role_for(ParticipantRole(participant.role)).value
        project.updated_at = utcnow()
    return participant, member is not None


async def load_participant(session: AsyncSession, project_id: str, participant_id: str) -> Participant:
    p = await load(session, Participant, participant_id)
    if p is None or p.project_id != project_id:
        raise NotFound(f"participant {participant_id} not found in project {project_id}")
    return p


async def unlink_organisation(session: AsyncSession, organisation_id: str) -> int:
    linked = (
        (await session.execute(select(Participant).where(Participant.organisation_id == organisation_id)))
        .scalars()
        .all()
    )
    projects: set[str] = set()
    for participant in linked:
        participant.organisation_id = None
        participant.updated_at = utcnow()
        projects.add(participant.project_id)
    for project_id in sorted(projects):
        await emit_updated(session, await load_project(session, project_id))
    return 0
