"""Use case of the CORDIS import."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.contracts import projects as contracts
from distretto_shared.web import Conflict, Invalid
from projects import metrics
from projects.consortium.domain import normalise_name
from projects.consortium.models import Participant, ParticipantCreate
from projects.consortium.repository import find_member, insert_participant, link, participant_keys
from projects.cordis import parser as cordis
from projects.cordis.models import CordisImportResult
from projects.project.domain import FINAL_PROJECT_STATUSES
from projects.project.models import Project
from projects.project.repository import by_cordis_id, emit_updated, load_project, member_ids, summary
from projects.project.service import apply_project_changes
from projects.tables import utcnow
from projects.unit import Ctx, emit, plain
from projects.vocabulary import ProjectStatus


async def import_cordis(ctx: Ctx, project_csv: str, organization_csv: str) -> CordisImportResult:
    """Import a CORDIS export pair: all of it, or nothing.

    Projects are matched by CORDIS id, participants by (project, CORDIS
    organisation id) or else by normalised name: re-importing updates, never
    duplicates. Every bad row is reported (422) with its file, line and reason.
    """
    ctx.require_staff("import from CORDIS")
    export = cordis.parse_export(project_csv, organization_csv)
    errors = list(export.errors)
    result = CordisImportResult()
    try:
        async with ctx.db.transaction() as session:
            in_file = export.project_ids
            projects: dict[str, Project] = {}
            for parsed in export.projects:
                assert parsed.project.cordis_id
                existing = await by_cordis_id(session, parsed.project.cordis_id)
                if existing is None:
                    existing = await _adoptable(session, parsed.project.acronym)
                if existing is None:
                    project = Project.model_validate(plain(parsed.project.model_dump()))
                    session.add(project)
                    await session.flush()
                    emit(
                        session,
                        contracts.ProjectRegistered(project_id=project.id, project=await summary(session, project)),
                    )
                    result.projects_created += 1
                    projects[project.cordis_id or ""] = project
                    continue
                changes = {
                    k: v
                    for k, v in parsed.project.model_dump().items()
                    if k in cordis.CORDIS_PROJECT_FIELDS and k in parsed.columns
                }
                # CORDIS is authoritative for its own fields: its status is taken as it is.
                old_status = existing.status
                if changes.get("status") and ProjectStatus(old_status) in FINAL_PROJECT_STATUSES:
                    changes["status"] = old_status
                try:
                    changes["cordis_id"] = parsed.project.cordis_id
                    changed = await apply_project_changes(session, ctx.settings, existing, changes, authoritative=True)
                except (Invalid, Conflict) as exc:
                    errors.append(cordis.RowError(cordis.PROJECT_FILE, parsed.line, exc.message))
                    continue
                result.projects_updated += int(changed)
                result.projects_unchanged += int(not changed)
                projects[existing.cordis_id or ""] = existing
            seen: dict[tuple[str, str], int] = {}
            touched: set[str] = set()
            for row in export.participants:
                project_or_none = projects.get(row.cordis_project_id)
                if project_or_none is None:
                    project_or_none = await by_cordis_id(session, row.cordis_project_id)
                if project_or_none is None:
                    if row.cordis_project_id not in in_file:  # else its project row is reported already
                        errors.append(
                            cordis.RowError(
                                cordis.ORGANIZATION_FILE,
                                row.line,
                                f"projectID {row.cordis_project_id} is neither in project.csv nor already registered",
                            )
                        )
                    continue
                project = project_or_none
                data = row.participant
                key = data.cordis_organisation_id or "name:" + normalise_name(data.name)
                if (project.id, key) in seen:
                    errors.append(
                        cordis.RowError(
                            cordis.ORGANIZATION_FILE,
                            row.line,
                            f"organisation {data.cordis_organisation_id or data.name} is already on line "
                            f"{seen[(project.id, key)]} for project {row.cordis_project_id}",
                        )
                    )
                    continue
                seen[(project.id, key)] = row.line
                if errors:
                    continue  # keep checking rows, but write nothing more
                before = (project.foundation_role, await member_ids(session, project.id))
                existing_p = await _existing_participant(session, project.id, data)
                if existing_p is None:
                    _, linked = await insert_participant(session, ctx.settings, project, data)
                    result.participants_created += 1
                    result.participants_linked += int(linked)
                else:
                    fields = {k: v for k, v in plain(data.model_dump()).items() if k in row.columns}
                    fields = {k: v for k, v in fields.items() if getattr(existing_p, k) != v}
                    if fields:
                        for k, v in fields.items():
                            setattr(existing_p, k, v)
                        existing_p.updated_at = utcnow()
                        participant_keys(ctx.settings, existing_p)
                        result.participants_updated += 1
                    if existing_p.organisation_id is None:
                        member = await find_member(session, existing_p.vat_key, existing_p.name_key)
                        if member:
                            link(session, existing_p, project, member.organisation_id)
                            result.participants_linked += 1
                await session.flush()
                if (project.foundation_role, await member_ids(session, project.id)) != before:
                    touched.add(project.id)
            for project_id in sorted(touched):
                await emit_updated(session, await load_project(session, project_id))
            if errors:
                raise _ImportRejected()
            result.project_ids = sorted(p.id for p in projects.values())
            result.warnings = [w.as_dict() for w in export.warnings]
    except _ImportRejected:
        pass
    except IntegrityError as exc:
        raise Conflict("the import clashes with existing records; nothing was imported") from exc
    if errors:
        errors.sort(key=lambda e: (e.file != cordis.PROJECT_FILE, e.line))
        metrics.IMPORTS.labels("rejected").inc()
        raise Invalid(
            f"{len(errors)} bad row(s); nothing was imported. First: {errors[0]}",
            details=[{"file": e.file, "line": e.line, "reason": e.reason} for e in errors],
        )
    metrics.IMPORTS.labels("imported").inc()
    return result


async def _adoptable(session: AsyncSession, acronym: str) -> Project | None:
    """A project entered by hand (no CORDIS id) with this acronym, which an import adopts instead of duplicating."""
    query = select(Project).where(
        col(Project.cordis_id).is_(None), func.lower(Project.acronym) == acronym.strip().lower()
    )
    rows = (await session.scalars(query)).all()
    return rows[0] if len(rows) == 1 else None


class _ImportRejected(Exception):
    """Rolls the import's transaction back when any row was bad."""


async def _existing_participant(session: AsyncSession, project_id: str, data: ParticipantCreate) -> Participant | None:
    stmt = select(Participant).where(Participant.project_id == project_id)
    if data.cordis_organisation_id:
        stmt = stmt.where(Participant.cordis_organisation_id == data.cordis_organisation_id)
    else:
        stmt = stmt.where(Participant.name_key == normalise_name(data.name))
    return (await session.execute(stmt.order_by(Participant.id))).scalars().first()
