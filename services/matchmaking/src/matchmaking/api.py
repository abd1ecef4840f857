"""HTTP routes of the matchmaking service: HTTP → use case → response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from distretto_shared.context import Context, public_request_context, request_context
from distretto_shared.web import Page, PageParams, page_params
from matchmaking import service
from matchmaking.config import Settings
from matchmaking.domain import Decision, OpportunityStatus, OpportunityType
from matchmaking.models import (
    DecisionRequest,
    FeedbackRequest,
    IndexStats,
    MatchCreate,
    MatchPublic,
    MeetingHeldRequest,
    MeetingRequest,
    OpportunityAnonymous,
    OpportunityCreate,
    OpportunityPublic,
    OpportunityUpdate,
    OrganisationPublic,
    ProposeRequest,
    RankedCounterpart,
    RenewRequest,
)

router = APIRouter()

Id = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
PageDep = Annotated[PageParams, Depends(page_params)]
Sector = Annotated[str | None, Query(min_length=1, max_length=60, pattern=r"^[a-z0-9][a-z0-9_\- ]*$")]
Country = Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2")]
Kind = Annotated[
    str | None,
    Query(pattern="^(company|university|research_institute|hospital|health_authority|foundation|other)$"),
]
Target = Annotated[str, Query(pattern="^(all|opportunities|profiles)$")]


Ctx = Annotated[Context[Settings], Depends(request_context)]
"""The caller, the database, the settings and the ranking singletons (see docs/service-guide.md);
anonymous callers get 401."""
PublicCtx = Annotated[Context[Settings], Depends(public_request_context)]
"""The same for the public (anonymised) routes, which anonymous callers reach too."""


def _filters(sector: str | None, kind: str | None, country: str | None, include_expired: bool) -> service.RankFilters:
    return service.RankFilters(
        sector=sector, kind=kind, country=country.upper() if country else None, include_expired=include_expired
    )


# -- opportunities ----------------------------------------------------------------------------


@router.post("/opportunities", status_code=201, tags=["opportunities"], summary="Publish an opportunity")
async def create_opportunity(ctx: Ctx, body: OpportunityCreate) -> OpportunityPublic:
    return await service.create_opportunity(ctx, body)


@router.get("/opportunities", tags=["opportunities"], summary="List opportunities (owner/staff view)")
async def list_opportunities(
    ctx: Ctx,
    page: PageDep,
    opportunity_type: OpportunityType | None = None,
    status: OpportunityStatus | None = None,
    owner_organisation_id: Annotated[str | None, Query(max_length=64)] = None,
    sector: Sector = None,
    reference: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[OpportunityPublic]:
    return await service.list_opportunities(
        ctx,
        page,
        opportunity_type=opportunity_type.value if opportunity_type else None,
        status=status.value if status else None,
        owner=owner_organisation_id,
        sector=sector,
        reference=reference,
    )


@router.get("/opportunities/{opportunity_id}", tags=["opportunities"], summary="One opportunity")
async def get_opportunity(ctx: Ctx, opportunity_id: Id) -> OpportunityPublic:
    return await service.get_opportunity(ctx, opportunity_id)


@router.patch("/opportunities/{opportunity_id}", tags=["opportunities"], summary="Change an opportunity")
async def update_opportunity(ctx: Ctx, opportunity_id: Id, body: OpportunityUpdate) -> OpportunityPublic:
    return await service.update_opportunity(ctx, opportunity_id, body)


@router.post("/opportunities/{opportunity_id}/renew", tags=["opportunities"], summary="Extend an opportunity")
async def renew_opportunity(ctx: Ctx, opportunity_id: Id, body: RenewRequest) -> OpportunityPublic:
    return await service.renew_opportunity(ctx, opportunity_id, body)


@router.post(
    "/opportunities/{opportunity_id}/withdraw", tags=["opportunities"], summary="Take an opportunity off the market"
)
async def withdraw_opportunity(ctx: Ctx, opportunity_id: Id) -> OpportunityPublic:
    return await service.withdraw_opportunity(ctx, opportunity_id)


@router.get(
    "/opportunities/{opportunity_id}/counterparts",
    tags=["ranking"],
    summary="Best counterpart opportunities and competence profiles, with score parts and explanations",
)
async def counterparts(
    ctx: Ctx,
    opportunity_id: Id,
    page: PageDep,
    target: Target = "all",
    sector: Sector = None,
    kind: Kind = None,
    country: Country = None,
    include_expired: bool = False,
) -> Page[RankedCounterpart]:
    return await service.rank_for_opportunity(
        ctx, opportunity_id, page, target=target, filters=_filters(sector, kind, country, include_expired)
    )


@router.post(
    "/opportunities/{opportunity_id}/matches",
    status_code=201,
    tags=["matches"],
    summary="Call for matches: propose the engine's best new counterparts",
)
async def propose_for_opportunity(ctx: Ctx, opportunity_id: Id, body: ProposeRequest) -> list[MatchPublic]:
    return await service.propose_for_opportunity(ctx, opportunity_id, body)


# -- public view ------------------------------------------------------------------------------------


@router.get("/public/opportunities", tags=["public"], summary="Published opportunities, anonymised")
async def public_opportunities(
    ctx: PublicCtx, page: PageDep, opportunity_type: OpportunityType | None = None, sector: Sector = None
) -> Page[OpportunityAnonymous]:
    return await service.list_public(
        ctx, page, opportunity_type=opportunity_type.value if opportunity_type else None, sector=sector
    )


@router.get("/public/opportunities/{opportunity_id}", tags=["public"], summary="One published opportunity, anonymised")
async def public_opportunity(ctx: PublicCtx, opportunity_id: Id) -> OpportunityAnonymous:
    return await service.get_public(ctx, opportunity_id)


# -- organisations ------------------------------------------------------------------------------------


@router.get("/organisations", tags=["organisations"], summary="Competence profiles")
async def list_organisations(
    ctx: Ctx,
    page: PageDep,
    status: Annotated[str | None, Query(pattern="^(applied|active|rejected|suspended|lapsed|left)$")] = None,
) -> Page[OrganisationPublic]:
    return await service.list_organisations(ctx, page, status=status)


@router.get("/organisations/{organisation_id}", tags=["organisations"], summary="One competence profile")
async def get_organisation(ctx: Ctx, organisation_id: Id) -> OrganisationPublic:
    return await service.get_organisation(ctx, organisation_id)


@router.get(
    "/organisations/{organisation_id}/opportunities",
    tags=["ranking"],
    summary="Opportunities that fit an organisation, with score parts and explanations",
)
async def opportunities_for_organisation(
    ctx: Ctx,
    organisation_id: Id,
    page: PageDep,
    sector: Sector = None,
    country: Country = None,
    include_expired: bool = False,
) -> Page[RankedCounterpart]:
    return await service.rank_for_organisation(
        ctx, organisation_id, page, filters=_filters(sector, None, country, include_expired)
    )


# -- matches ----------------------------------------------------------------------------------------------


@router.post("/matches", status_code=201, tags=["matches"], summary="Propose a match")
async def propose_match(ctx: Ctx, body: MatchCreate) -> MatchPublic:
    return await service.propose_match(ctx, body)


@router.get("/matches", tags=["matches"], summary="List matches")
async def list_matches(
    ctx: Ctx,
    page: PageDep,
    state: Annotated[str | None, Query(pattern="^(proposed|accepted|declined|meeting_scheduled|meeting_held)$")] = None,
    opportunity_id: Annotated[str | None, Query(max_length=64)] = None,
    counterpart_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[MatchPublic]:
    return await service.list_matches(
        ctx, page, state=state, opportunity_id=opportunity_id, counterpart_id=counterpart_id
    )


@router.get("/matches/{match_id}", tags=["matches"], summary="One match")
async def get_match(ctx: Ctx, match_id: Id) -> MatchPublic:
    return await service.get_match(ctx, match_id)


@router.post("/matches/{match_id}/accept", tags=["matches"], summary="One side accepts")
async def accept_match(ctx: Ctx, match_id: Id, body: DecisionRequest) -> MatchPublic:
    return await service.decide_match(ctx, match_id, body.side, Decision.ACCEPTED)


@router.post("/matches/{match_id}/decline", tags=["matches"], summary="One side declines")
async def decline_match(ctx: Ctx, match_id: Id, body: DecisionRequest) -> MatchPublic:
    return await service.decide_match(ctx, match_id, body.side, Decision.DECLINED)


@router.post("/matches/{match_id}/meeting", tags=["matches"], summary="Schedule the meeting")
async def schedule_meeting(ctx: Ctx, match_id: Id, body: MeetingRequest) -> MatchPublic:
    return await service.schedule_meeting(ctx, match_id, body)


@router.post("/matches/{match_id}/meeting/held", tags=["matches"], summary="The meeting took place")
async def meeting_held(ctx: Ctx, match_id: Id, body: MeetingHeldRequest) -> MatchPublic:
    return await service.meeting_held(ctx, match_id, body)


@router.post("/matches/{match_id}/feedback", tags=["matches"], summary="Was the match useful?")
async def feedback(ctx: Ctx, match_id: Id, body: FeedbackRequest) -> MatchPublic:
    return await service.give_feedback(ctx, match_id, body)


# -- operations -----------------------------------------------------------------------------------------------


@router.get("/index", tags=["operations"], summary="What the ranking index holds")
async def index_stats(ctx: Ctx) -> IndexStats:
    return service.index_stats(ctx)
