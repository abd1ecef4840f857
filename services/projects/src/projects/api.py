"""HTTP routes of the projects service: request → use case → response."""

from __future__ import annotations

from datetime import date
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError

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


def deps(request: Request) -> service.Deps:
    """The use cases' dependencies from the running app."""
    ctx = request.app.state.ctx
    settings: Settings = ctx.settings
    return service.Deps(db=ctx.db, settings=settings, source=ctx.source)


Deps = Annotated[service.Deps, Depends(deps)]
Paging = Annotated[PageParams, Depends(page_params)]

# -- projects ----------------------------------------------------------------


@router.post("/projects", status_code=201, tags=["projects"], summary="Register a project")
async def create_project(body: ProjectCreate, d: Deps) -> ProjectPublic:
    return await service.register_project(d, body)


@router.get("/projects", tags=["projects"], summary="List projects (filtered, paginated)")
async def list_projects(
    d: Deps,
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
    return await service.list_projects(d, filters, page)


@router.get("/projects/{project_id}", tags=["projects"], summary="One project")
async def get_project(project_id: str, d: Deps) -> ProjectPublic:
    return await service.get_project(d, project_id)


@router.patch("/projects/{project_id}", tags=["projects"], summary="Change a project")
async def update_project(project_id: str, body: ProjectUpdate, d: Deps) -> ProjectPublic:
    return await service.update_project(d, project_id, body)


# -- consortium ----------------------------------------------------------------


@router.post("/projects/{project_id}/participants", status_code=201, tags=["consortium"], summary="Add a participant")
async def add_participant(project_id: str, body: ParticipantCreate, d: Deps) -> ParticipantPublic:
    return await service.add_participant(d, project_id, body)


@router.get("/projects/{project_id}/participants", tags=["consortium"], summary="A project's consortium")
async def list_participants(
    project_id: str,
    d: Deps,
    page: Paging,
    role: ParticipantRole | None = None,
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    linked: Annotated[bool | None, Query(description="only participants that are (not) member organisations")] = None,
) -> Page[ParticipantPublic]:
    return await service.list_participants(
        d, project_id, page, role=role.value if role else None, country=country, linked=linked
    )


@router.get("/projects/{project_id}/participants/{participant_id}", tags=["consortium"], summary="One participant")
async def get_participant(project_id: str, participant_id: str, d: Deps) -> ParticipantPublic:
    return await service.get_participant(d, project_id, participant_id)


@router.patch("/projects/{project_id}/participants/{participant_id}", tags=["consortium"], summary="Change one")
async def update_participant(
    project_id: str, participant_id: str, body: ParticipantUpdate, d: Deps
) -> ParticipantPublic:
    return await service.update_participant(d, project_id, participant_id, body)


@router.delete(
    "/projects/{project_id}/participants/{participant_id}", status_code=204, tags=["consortium"], summary="Remove one"
)
async def delete_participant(project_id: str, participant_id: str, d: Deps) -> Response:
    await service.delete_participant(d, project_id, participant_id)
    return Response(status_code=204)


@router.get("/organisations", tags=["consortium"], summary="Member organisations known from the membership events")
async def list_organisations(d: Deps, page: Paging) -> Page[MemberOrganisationPublic]:
    return await service.list_organisations(d, page)


# -- work packages ----------------------------------------------------------------


@router.post("/projects/{project_id}/work-packages", status_code=201, tags=["work plan"], summary="Add a WP")
async def add_work_package(project_id: str, body: WorkPackageCreate, d: Deps) -> WorkPackagePublic:
    return await service.add_work_package(d, project_id, body)


@router.get("/projects/{project_id}/work-packages", tags=["work plan"], summary="A project's work packages")
async def list_work_packages(project_id: str, d: Deps, page: Paging) -> Page[WorkPackagePublic]:
    return await service.list_work_packages(d, project_id, page)


@router.get("/projects/{project_id}/work-packages/{wp_id}", tags=["work plan"], summary="One work package")
async def get_work_package(project_id: str, wp_id: str, d: Deps) -> WorkPackagePublic:
    return await service.get_work_package(d, project_id, wp_id)


@router.patch("/projects/{project_id}/work-packages/{wp_id}", tags=["work plan"], summary="Change a work package")
async def update_work_package(project_id: str, wp_id: str, body: WorkPackageUpdate, d: Deps) -> WorkPackagePublic:
    return await service.update_work_package(d, project_id, wp_id, body)


@router.delete("/projects/{project_id}/work-packages/{wp_id}", status_code=204, tags=["work plan"], summary="Remove")
async def delete_work_package(project_id: str, wp_id: str, d: Deps) -> Response:
    await service.delete_work_package(d, project_id, wp_id)
    return Response(status_code=204)


# -- deliverables -------------------------------------------------------------------


@router.post("/projects/{project_id}/deliverables", status_code=201, tags=["work plan"], summary="Add a deliverable")
async def add_deliverable(project_id: str, body: DeliverableCreate, d: Deps) -> DeliverablePublic:
    return await service.add_deliverable(d, project_id, body)


@router.get("/projects/{project_id}/deliverables", tags=["work plan"], summary="A project's deliverables")
async def list_project_deliverables(
    project_id: str,
    d: Deps,
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
    return await service.list_deliverables(d, filters, page)


@router.get("/deliverables", tags=["work plan"], summary="Deliverables of every project, soonest due first")
async def list_deliverables(
    d: Deps,
    page: Paging,
    status: DeliverableStatus | None = None,
    due_before: date | None = None,
    due_after: date | None = None,
) -> Page[DeliverablePublic]:
    filters = service.DeliverableFilters(
        status=status.value if status else None, due_before=due_before, due_after=due_after
    )
    return await service.list_deliverables(d, filters, page)


@router.get("/projects/{project_id}/deliverables/{deliverable_id}", tags=["work plan"], summary="One deliverable")
async def get_deliverable(project_id: str, deliverable_id: str, d: Deps) -> DeliverablePublic:
    return await service.get_deliverable(d, project_id, deliverable_id)


@router.patch("/projects/{project_id}/deliverables/{deliverable_id}", tags=["work plan"], summary="Change its plan")
async def update_deliverable(
    project_id: str, deliverable_id: str, body: DeliverableUpdate, d: Deps
) -> DeliverablePublic:
    return await service.update_deliverable(d, project_id, deliverable_id, body)


@router.delete(
    "/projects/{project_id}/deliverables/{deliverable_id}", status_code=204, tags=["work plan"], summary="Remove"
)
async def delete_deliverable(project_id: str, deliverable_id: str, d: Deps) -> Response:
    await service.delete_deliverable(d, project_id, deliverable_id)
    return Response(status_code=204)


@router.post("/projects/{project_id}/deliverables/{deliverable_id}/submit", tags=["work plan"], summary="Submit")
async def submit_deliverable(
    project_id: str, deliverable_id: str, d: Deps, body: DeliverableSubmit | None = None
) -> DeliverablePublic:
    return await service.submit_deliverable(d, project_id, deliverable_id, body.submitted_on if body else None)


@router.post("/projects/{project_id}/deliverables/{deliverable_id}/accept", tags=["work plan"], summary="Accepted")
async def accept_deliverable(
    project_id: str, deliverable_id: str, d: Deps, body: DeliverableAccept | None = None
) -> DeliverablePublic:
    return await service.accept_deliverable(d, project_id, deliverable_id, body.accepted_on if body else None)


# -- milestones and reporting periods ------------------------------------------------


@router.post("/projects/{project_id}/milestones", status_code=201, tags=["work plan"], summary="Add a milestone")
async def add_milestone(project_id: str, body: MilestoneCreate, d: Deps) -> MilestonePublic:
    return await service.add_milestone(d, project_id, body)


@router.get("/projects/{project_id}/milestones", tags=["work plan"], summary="A project's milestones")
async def list_milestones(project_id: str, d: Deps, page: Paging) -> Page[MilestonePublic]:
    return await service.list_milestones(d, project_id, page)


@router.get("/projects/{project_id}/milestones/{milestone_id}", tags=["work plan"], summary="One milestone")
async def get_milestone(project_id: str, milestone_id: str, d: Deps) -> MilestonePublic:
    return await service.get_milestone(d, project_id, milestone_id)


@router.patch("/projects/{project_id}/milestones/{milestone_id}", tags=["work plan"], summary="Change a milestone")
async def update_milestone(project_id: str, milestone_id: str, body: MilestoneUpdate, d: Deps) -> MilestonePublic:
    return await service.update_milestone(d, project_id, milestone_id, body)


@router.delete(
    "/projects/{project_id}/milestones/{milestone_id}", status_code=204, tags=["work plan"], summary="Remove"
)
async def delete_milestone(project_id: str, milestone_id: str, d: Deps) -> Response:
    await service.delete_milestone(d, project_id, milestone_id)
    return Response(status_code=204)


@router.post("/projects/{project_id}/milestones/{milestone_id}/reach", tags=["work plan"], summary="Reached")
async def reach_milestone(
    project_id: str, milestone_id: str, d: Deps, body: MilestoneReach | None = None
) -> MilestonePublic:
    return await service.reach_milestone(d, project_id, milestone_id, body.reached_on if body else None)


@router.post("/projects/{project_id}/reporting-periods", status_code=201, tags=["work plan"], summary="Add a period")
async def add_reporting_period(project_id: str, body: ReportingPeriodCreate, d: Deps) -> ReportingPeriodPublic:
    return await service.add_reporting_period(d, project_id, body)


@router.get("/projects/{project_id}/reporting-periods", tags=["work plan"], summary="A project's reporting periods")
async def list_reporting_periods(project_id: str, d: Deps, page: Paging) -> Page[ReportingPeriodPublic]:
    return await service.list_reporting_periods(d, project_id, page)


@router.patch("/projects/{project_id}/reporting-periods/{period_id}", tags=["work plan"], summary="Change a period")
async def update_reporting_period(
    project_id: str, period_id: str, body: ReportingPeriodUpdate, d: Deps
) -> ReportingPeriodPublic:
    return await service.update_reporting_period(d, project_id, period_id, body)


@router.delete(
    "/projects/{project_id}/reporting-periods/{period_id}", status_code=204, tags=["work plan"], summary="Remove"
)
async def delete_reporting_period(project_id: str, period_id: str, d: Deps) -> Response:
    await service.delete_reporting_period(d, project_id, period_id)
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
async def import_cordis(request: Request, d: Deps) -> CordisImportResult:
    """JSON ``{"project_csv": "...", "organization_csv": "..."}`` or multipart fields ``project`` / ``organization``."""
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
    return await service.import_cordis(d, project_csv, organization_csv)


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
    d: Deps, today: Annotated[date | None, Query(description="scan as of this date (default: today)")] = None
) -> DeadlineScanResult:
    return await service.scan_deadlines(d, today)


@router.get("/portfolio", tags=["portfolio"], summary="Portfolio figures")
async def portfolio(d: Deps, foundation_role: FoundationRole | None = None) -> PortfolioPublic:
    return await service.portfolio(d, foundation_role.value if foundation_role else None)
