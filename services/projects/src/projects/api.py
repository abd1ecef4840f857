"""HTTP routes of the projects service: request → use case → response."""

from __future__ import annotations

from datetime import date
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError

from distretto_shared.context import Context, request_context
from distretto_shared.web import Invalid, Page, PageParams, page_params
from projects import service
from projects.config import Settings
from projects.domain import DeliverableStatus, FoundationRole, ParticipantRole, ProjectStatus
from projects.models import (
    CordisImportResult,
    CordisImportText,
    DeadlineScanResult,
    DeliverableAccept,
    DeliverableCreate,
    DeliverablePublic,
    DeliverableSubmit,
    DeliverableUpdate,
    MemberOrganisationPublic,
    MilestoneCreate,
    MilestonePublic,
    MilestoneReach,
    MilestoneUpdate,
    ParticipantCreate,
    ParticipantPublic,
    ParticipantUpdate,
    PortfolioPublic,
    ProjectCreate,
    ProjectPublic,
    ProjectUpdate,
    ReportingPeriodCreate,
    ReportingPeriodPublic,
    ReportingPeriodUpdate,
    WorkPackageCreate,
    WorkPackagePublic,
    WorkPackageUpdate,
)

router = APIRouter()

MAX_IMPORT_BYTES = 50 * 1024 * 1024


Ctx = Annotated[Context[Settings], Depends(request_context)]
"""The caller, the database and the settings (see docs/service-guide.md)."""
Paging = Annotated[PageParams, Depends(page_params)]

# -- projects ----------------------------------------------------------------


@router.post("/projects", status_code=201, tags=["projects"], summary="Register a project")
async def create_project(body: ProjectCreate, ctx: Ctx) -> ProjectPublic:
    return await service.register_project(ctx, body)


@router.get("/projects", tags=["projects"], summary="List projects (filtered, paginated)")
async def list_projects(
    ctx: Ctx,
    page: Paging,
    status: ProjectStatus | None = None,
    framework_programme: Annotated[str | None, Query(max_length=50)] = None,
    funding_scheme: Annotated[str | None, Query(max_length=100)] = None,
    foundation_role: FoundationRole | None = None,
    thematic_area: Annotated[str | None, Query(max_length=50)] = None,
    organisation_id: Annotated[str | None, Query(max_length=64, description="member organisation taking part")] = None,
    q: Annotated[str | None, Query(max_length=200, description="text in acronym or title")] = None,
) -> Page[ProjectPublic]:
    filters = service.ProjectFilters(
        status=status.value if status else None,
        framework_programme=framework_programme,
        funding_scheme=funding_scheme,
        foundation_role=foundation_role.value if foundation_role else None,
        thematic_area=thematic_area,
        organisation_id=organisation_id,
        q=q,
    )
    return await service.list_projects(ctx, filters, page)


@router.get("/projects/{project_id}", tags=["projects"], summary="One project")
async def get_project(project_id: str, ctx: Ctx) -> ProjectPublic:
    return await service.get_project(ctx, project_id)


@router.patch("/projects/{project_id}", tags=["projects"], summary="Change a project")
async def update_project(project_id: str, body: ProjectUpdate, ctx: Ctx) -> ProjectPublic:
    return await service.update_project(ctx, project_id, body)


# -- consortium ----------------------------------------------------------------


@router.post("/projects/{project_id}/participants", status_code=201, tags=["consortium"], summary="Add a participant")
async def add_participant(project_id: str, body: ParticipantCreate, ctx: Ctx) -> ParticipantPublic:
    return await service.add_participant(ctx, project_id, body)


@router.get("/projects/{project_id}/participants", tags=["consortium"], summary="A project's consortium")
async def list_participants(
    project_id: str,
    ctx: Ctx,
    page: Paging,
    role: ParticipantRole | None = None,
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    linked: Annotated[bool | None, Query(description="only participants that are (not) member organisations")] = None,
) -> Page[ParticipantPublic]:
    return await service.list_participants(
        ctx, project_id, page, role=role.value if role else None, country=country, linked=linked
    )


@router.get("/projects/{project_id}/participants/{participant_id}", tags=["consortium"], summary="One participant")
async def get_participant(project_id: str, participant_id: str, ctx: Ctx) -> ParticipantPublic:
    return await service.get_participant(ctx, project_id, participant_id)


@router.patch("/projects/{project_id}/participants/{participant_id}", tags=["consortium"], summary="Change one")
async def update_participant(
    project_id: str, participant_id: str, body: ParticipantUpdate, ctx: Ctx
) -> ParticipantPublic:
    return await service.update_participant(ctx, project_id, participant_id, body)


@router.delete(
    "/projects/{project_id}/participants/{participant_id}", status_code=204, tags=["consortium"], summary="Remove one"
)
async def delete_participant(project_id: str, participant_id: str, ctx: Ctx) -> Response:
    await service.delete_participant(ctx, project_id, participant_id)
    return Response(status_code=204)


@router.get("/organisations", tags=["consortium"], summary="Member organisations known from the membership events")
async def list_organisations(ctx: Ctx, page: Paging) -> Page[MemberOrganisationPublic]:
    return await service.list_organisations(ctx, page)


# -- work packages ----------------------------------------------------------------


@router.post("/projects/{project_id}/work-packages", status_code=201, tags=["work plan"], summary="Add a WP")
async def add_work_package(project_id: str, body: WorkPackageCreate, ctx: Ctx) -> WorkPackagePublic:
    return await service.add_work_package(ctx, project_id, body)


@router.get("/projects/{project_id}/work-packages", tags=["work plan"], summary="A project's work packages")
async def list_work_packages(project_id: str, ctx: Ctx, page: Paging) -> Page[WorkPackagePublic]:
    return await service.list_work_packages(ctx, project_id, page)


@router.get("/projects/{project_id}/work-packages/{wp_id}", tags=["work plan"], summary="One work package")
async def get_work_package(project_id: str, wp_id: str, ctx: Ctx) -> WorkPackagePublic:
    return await service.get_work_package(ctx, project_id, wp_id)


@router.patch("/projects/{project_id}/work-packages/{wp_id}", tags=["work plan"], summary="Change a work package")
async def update_work_package(project_id: str, wp_id: str, body: WorkPackageUpdate, ctx: Ctx) -> WorkPackagePublic:
    return await service.update_work_package(ctx, project_id, wp_id, body)


@router.delete("/projects/{project_id}/work-packages/{wp_id}", status_code=204, tags=["work plan"], summary="Remove")
async def delete_work_package(project_id: str, wp_id: str, ctx: Ctx) -> Response:
    await service.delete_work_package(ctx, project_id, wp_id)
    return Response(status_code=204)


# -- deliverables -------------------------------------------------------------------


@router.post("/projects/{project_id}/deliverables", status_code=201, tags=["work plan"], summary="Add a deliverable")
async def add_deliverable(project_id: str, body: DeliverableCreate, ctx: Ctx) -> DeliverablePublic:
    return await service.add_deliverable(ctx, project_id, body)


@router.get("/projects/{project_id}/deliverables", tags=["work plan"], summary="A project's deliverables")
async def list_project_deliverables(
    project_id: str,
    ctx: Ctx,
    page: Paging,
    status: DeliverableStatus | None = None,
    work_package: Annotated[int | None, Query(ge=1, le=99)] = None,
    due_before: date | None = None,
    due_after: date | None = None,
) -> Page[DeliverablePublic]:
    filters = service.DeliverableFilters(
        project_id=project_id,
        status=status.value if status else None,
        work_package=work_package,
        due_before=due_before,
        due_after=due_after,
    )
    return await service.list_deliverables(ctx, filters, page)


@router.get("/deliverables", tags=["work plan"], summary="Deliverables of every project, soonest due first")
async def list_deliverables(
    ctx: Ctx,
    page: Paging,
    status: DeliverableStatus | None = None,
    due_before: date | None = None,
    due_after: date | None = None,
) -> Page[DeliverablePublic]:
    filters = service.DeliverableFilters(
        status=status.value if status else None, due_before=due_before, due_after=due_after
    )
    return await service.list_deliverables(ctx, filters, page)


@router.get("/projects/{project_id}/deliverables/{deliverable_id}", tags=["work plan"], summary="One deliverable")
async def get_deliverable(project_id: str, deliverable_id: str, ctx: Ctx) -> DeliverablePublic:
    return await service.get_deliverable(ctx, project_id, deliverable_id)


@router.patch("/projects/{project_id}/deliverables/{deliverable_id}", tags=["work plan"], summary="Change its plan")
async def update_deliverable(
    project_id: str, deliverable_id: str, body: DeliverableUpdate, ctx: Ctx
) -> DeliverablePublic:
    return await service.update_deliverable(ctx, project_id, deliverable_id, body)


@router.delete(
    "/projects/{project_id}/deliverables/{deliverable_id}", status_code=204, tags=["work plan"], summary="Remove"
)
async def delete_deliverable(project_id: str, deliverable_id: str, ctx: Ctx) -> Response:
    await service.delete_deliverable(ctx, project_id, deliverable_id)
    return Response(status_code=204)


@router.post("/projects/{project_id}/deliverables/{deliverable_id}/submit", tags=["work plan"], summary="Submit")
async def submit_deliverable(
    project_id: str, deliverable_id: str, ctx: Ctx, body: DeliverableSubmit | None = None
) -> DeliverablePublic:
    return await service.submit_deliverable(ctx, project_id, deliverable_id, body.submitted_on if body else None)


@router.post("/projects/{project_id}/deliverables/{deliverable_id}/accept", tags=["work plan"], summary="Accepted")
async def accept_deliverable(
    project_id: str, deliverable_id: str, ctx: Ctx, body: DeliverableAccept | None = None
) -> DeliverablePublic:
    return await service.accept_deliverable(ctx, project_id, deliverable_id, body.accepted_on if body else None)


# -- milestones and reporting periods ------------------------------------------------


@router.post("/projects/{project_id}/milestones", status_code=201, tags=["work plan"], summary="Add a milestone")
async def add_milestone(project_id: str, body: MilestoneCreate, ctx: Ctx) -> MilestonePublic:
    return await service.add_milestone(ctx, project_id, body)


@router.get("/projects/{project_id}/milestones", tags=["work plan"], summary="A project's milestones")
async def list_milestones(project_id: str, ctx: Ctx, page: Paging) -> Page[MilestonePublic]:
    return await service.list_milestones(ctx, project_id, page)


@router.get("/projects/{project_id}/milestones/{milestone_id}", tags=["work plan"], summary="One milestone")
async def get_milestone(project_id: str, milestone_id: str, ctx: Ctx) -> MilestonePublic:
    return await service.get_milestone(ctx, project_id, milestone_id)


@router.patch("/projects/{project_id}/milestones/{milestone_id}", tags=["work plan"], summary="Change a milestone")
async def update_milestone(project_id: str, milestone_id: str, body: MilestoneUpdate, ctx: Ctx) -> MilestonePublic:
    return await service.update_milestone(ctx, project_id, milestone_id, body)


@router.delete(
    "/projects/{project_id}/milestones/{milestone_id}", status_code=204, tags=["work plan"], summary="Remove"
)
async def delete_milestone(project_id: str, milestone_id: str, ctx: Ctx) -> Response:
    await service.delete_milestone(ctx, project_id, milestone_id)
    return Response(status_code=204)


@router.post("/projects/{project_id}/milestones/{milestone_id}/reach", tags=["work plan"], summary="Reached")
async def reach_milestone(
    project_id: str, milestone_id: str, ctx: Ctx, body: MilestoneReach | None = None
) -> MilestonePublic:
    return await service.reach_milestone(ctx, project_id, milestone_id, body.reached_on if body else None)


@router.post("/projects/{project_id}/reporting-periods", status_code=201, tags=["work plan"], summary="Add a period")
async def add_reporting_period(project_id: str, body: ReportingPeriodCreate, ctx: Ctx) -> ReportingPeriodPublic:
    return await service.add_reporting_period(ctx, project_id, body)


@router.get("/projects/{project_id}/reporting-periods", tags=["work plan"], summary="A project's reporting periods")
async def list_reporting_periods(project_id: str, ctx: Ctx, page: Paging) -> Page[ReportingPeriodPublic]:
    return await service.list_reporting_periods(ctx, project_id, page)


@router.patch("/projects/{project_id}/reporting-periods/{period_id}", tags=["work plan"], summary="Change a period")
async def update_reporting_period(
    project_id: str, period_id: str, body: ReportingPeriodUpdate, ctx: Ctx
) -> ReportingPeriodPublic:
    return await service.update_reporting_period(ctx, project_id, period_id, body)


@router.delete(
    "/projects/{project_id}/reporting-periods/{period_id}", status_code=204, tags=["work plan"], summary="Remove"
)
async def delete_reporting_period(project_id: str, period_id: str, ctx: Ctx) -> Response:
    await service.delete_reporting_period(ctx, project_id, period_id)
    return Response(status_code=204)


# -- import, deadlines, portfolio --------------------------------------------------------

_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": CordisImportText.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["project"],
                    "properties": {
                        "project": {"type": "string", "format": "binary", "description": "project.csv"},
                        "organization": {"type": "string", "format": "binary", "description": "organization.csv"},
                    },
                }
            },
        },
    }
}


@router.post(
    "/imports/cordis",
    tags=["import"],
    summary="Import a CORDIS export (project.csv + organization.csv): all or nothing",
    openapi_extra=_IMPORT_BODY,
)
async def import_cordis(request: Request, ctx: Ctx) -> CordisImportResult:
    """JSON ``{"project_csv": "...", "organization_csv": "..."}`` or multipart fields ``project`` / ``organization``."""
    ctx.require_staff("import from CORDIS")  # before the body is read
    body = await request.body()
    if len(body) > MAX_IMPORT_BYTES:
        raise Invalid(f"the upload is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        project_csv, organization_csv = _multipart_files(ctype, body)
    elif ctype.startswith("application/json"):
        try:
            payload = CordisImportText.model_validate_json(body)
        except ValidationError as exc:
            raise Invalid(
                "body must be JSON with project_csv (and organization_csv): "
                + "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()),
            ) from exc
        project_csv, organization_csv = payload.project_csv, payload.organization_csv
    else:
        raise Invalid("send multipart/form-data (fields project, organization) or application/json")
    return await service.import_cordis(ctx, project_csv, organization_csv)


def _multipart_files(ctype: str, body: bytes) -> tuple[str, str]:
    """The two CSV files of a multipart upload (parsed with the standard library's MIME parser)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"MIME-Version: 1.0\r\nContent-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise Invalid("the multipart body could not be read")
    files: dict[str, str] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition") or "")
        key = {"project": "project", "project_csv": "project", "organization": "organization"}.get(name)
        key = key or {"organization_csv": "organization", "organisation": "organization"}.get(name)
        if key is None:
            continue
        raw = part.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""
        try:
            files[key] = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Invalid(f"field {name!r} is not UTF-8 text") from exc
    if "project" not in files:
        raise Invalid("the multipart upload needs a 'project' field with project.csv")
    return files["project"], files.get("organization", "")


@router.post("/deadlines/scan", tags=["deadlines"], summary="Run the deadline scan now")
async def scan_deadlines(
    ctx: Ctx, today: Annotated[date | None, Query(description="scan as of this date (default: today)")] = None
) -> DeadlineScanResult:
    return await service.scan_deadlines(ctx, today)


@router.get("/portfolio", tags=["portfolio"], summary="Portfolio figures")
async def portfolio(ctx: Ctx, foundation_role: FoundationRole | None = None) -> PortfolioPublic:
    return await service.portfolio(ctx, foundation_role.value if foundation_role else None)
