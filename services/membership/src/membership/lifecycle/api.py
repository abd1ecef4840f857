"""HTTP routes of the lifecycle: approve, status changes, renewals, the history, fee plans."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from distretto_shared.conventions import Id
from distretto_shared.web import Page
from membership.common import CallerCtx, Ctx, Paging
from membership.lifecycle import service
from membership.lifecycle.domain import LifecycleAction
from membership.lifecycle.models import (
    ApproveRequest,
    FeePlanCreate,
    FeePlanPublic,
    ReasonRequest,
    RenewalCreate,
    RenewalPublic,
    StatusChangePublic,
)
from membership.organisations.models import OrganisationPublic

router = APIRouter()


@router.post("/organisations/{organisation_id}/approve", response_model=OrganisationPublic, tags=["lifecycle"])
async def approve(
    ctx: CallerCtx, organisation_id: Id, body: Annotated[ApproveRequest | None, Body()] = None
) -> OrganisationPublic:
    """applied → active."""
    return await service.approve(ctx, organisation_id, body or ApproveRequest())


async def _step(
    ctx: Ctx, organisation_id: str, action: LifecycleAction, body: ReasonRequest | None
) -> OrganisationPublic:
    return await service.change_status(ctx, organisation_id, action, (body or ReasonRequest()).reason)


Reason = Annotated[ReasonRequest | None, Body()]


@router.post("/organisations/{organisation_id}/reject", response_model=OrganisationPublic, tags=["lifecycle"])
async def reject(ctx: CallerCtx, organisation_id: Id, body: Reason = None) -> OrganisationPublic:
    """applied → rejected."""
    return await _step(ctx, organisation_id, LifecycleAction.reject, body)


@router.post("/organisations/{organisation_id}/suspend", response_model=OrganisationPublic, tags=["lifecycle"])
async def suspend(ctx: CallerCtx, organisation_id: Id, body: Reason = None) -> OrganisationPublic:
    """active → suspended."""
    return await _step(ctx, organisation_id, LifecycleAction.suspend, body)


@router.post("/organisations/{organisation_id}/reinstate", response_model=OrganisationPublic, tags=["lifecycle"])
async def reinstate(ctx: CallerCtx, organisation_id: Id, body: Reason = None) -> OrganisationPublic:
    """suspended → active."""
    return await _step(ctx, organisation_id, LifecycleAction.reinstate, body)


@router.post("/organisations/{organisation_id}/lapse", response_model=OrganisationPublic, tags=["lifecycle"])
async def lapse(ctx: CallerCtx, organisation_id: Id, body: Reason = None) -> OrganisationPublic:
    """active → lapsed (staff): the renewal will not be paid. The scheduled scan does the same on its
    own once a renewal is overdue past the grace period; a renewal brings the member back."""
    return await _step(ctx, organisation_id, LifecycleAction.lapse, body)


@router.post("/organisations/{organisation_id}/leave", response_model=OrganisationPublic, tags=["lifecycle"])
async def leave(ctx: CallerCtx, organisation_id: Id, body: Reason = None) -> OrganisationPublic:
    """any → left."""
    return await _step(ctx, organisation_id, LifecycleAction.leave, body)


@router.post(
    "/organisations/{organisation_id}/renewals", status_code=201, response_model=RenewalPublic, tags=["lifecycle"]
)
async def renew(
    ctx: CallerCtx, organisation_id: Id, body: Annotated[RenewalCreate | None, Body()] = None
) -> RenewalPublic:
    """A paid renewal: extends an active membership, reactivates a lapsed one."""
    return await service.renew(ctx, organisation_id, body or RenewalCreate())


@router.get("/organisations/{organisation_id}/renewals", response_model=Page[RenewalPublic], tags=["lifecycle"])
async def list_renewals(ctx: CallerCtx, organisation_id: Id, page: Paging) -> Page[RenewalPublic]:
    """An organisation's renewals, latest first."""
    return await service.list_renewals(ctx, organisation_id, page)


@router.get("/organisations/{organisation_id}/history", response_model=Page[StatusChangePublic], tags=["lifecycle"])
async def history(ctx: CallerCtx, organisation_id: Id, page: Paging) -> Page[StatusChangePublic]:
    """The organisation's lifecycle steps, oldest first."""
    return await service.history(ctx, organisation_id, page)


@router.post("/fee-plans", status_code=201, response_model=FeePlanPublic, tags=["lifecycle"])
async def create_fee_plan(ctx: CallerCtx, body: FeePlanCreate) -> FeePlanPublic:
    """A new fee plan (amount, period, grace days)."""
    return await service.create_fee_plan(ctx, body)


@router.get("/fee-plans", response_model=Page[FeePlanPublic], tags=["lifecycle"])
async def list_fee_plans(ctx: CallerCtx, page: Paging) -> Page[FeePlanPublic]:
    """Fee plans by name."""
    return await service.list_fee_plans(ctx, page)
