"""HTTP route of the deadline engine."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from distretto_shared.conventions import IsoDate
from projects.deadlines import service
from projects.deadlines.models import DeadlineScanResult
from projects.routing import Ctx

router = APIRouter()


@router.post("/deadlines/scan", tags=["deadlines"], summary="Run the deadline scan now")
async def scan_deadlines(
    ctx: Ctx, today: Annotated[IsoDate | None, Query(description="scan as of this date (default: today)")] = None
) -> DeadlineScanResult:
    return await service.scan_deadlines(ctx, today)
