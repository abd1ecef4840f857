"""HTTP routes of matches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from distretto_shared.conventions import hex_id
from distretto_shared.web import Page
from matchmaking.matches import service
from matchmaking.matches.domain import Decision
from matchmaking.matches.models import (
    DecisionRequest,
    FeedbackRequest,
    MatchCreate,
    MatchPublic,
    MeetingHeldRequest,
    MeetingRequest,
    ProposeRequest,
)
from matchmaking.routing import Ctx, Id, PageDep

router = APIRouter()


@router.post(
    "/opportunities/{opportunity_id}/matches",
    status_code=201,
    tags=["matches"],
    summary="Call for matches: propose the engine's best new counterparts",
)
async def propose_for_opportunity(ctx: Ctx, opportunity_id: Id, body: ProposeRequest) -> list[MatchPublic]:
    return await service.propose_for_opportunity(ctx, opportunity_id, body)


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
        ctx, page, state=state, opportunity_id=hex_id(opportunity_id), counterpart_id=counterpart_id
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
