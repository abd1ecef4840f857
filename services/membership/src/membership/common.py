"""What the use cases and routes of every aggregate share: the context type, today, paging, error text."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Depends
from pydantic import ValidationError

from distretto_shared.context import Context, public_request_context, request_context
from distretto_shared.web import Paging as Paging  # re-exported for the aggregates' list routes
from membership.config import Settings

Ctx = Context[Settings]
"""What every use case receives: the caller, the database, the settings."""

CallerCtx = Annotated[Context[Settings], Depends(request_context)]
"""A route's context (see docs/service-guide.md); anonymous callers get 401."""
PublicCtx = Annotated[Context[Settings], Depends(public_request_context)]
"""The same for the public routes, which anonymous callers reach too."""


def today() -> date:
    """Today, in UTC."""
    return datetime.now(UTC).date()


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line a user reads (``field: message; …``)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )
