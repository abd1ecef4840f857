"""What every router of the service takes: the context and the paging parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from distretto_shared.context import Context, request_context
from distretto_shared.web import Paging as Paging  # re-exported for the aggregates' list routes
from projects.config import Settings
from projects.tables import StoredId

Ctx = Annotated[Context[Settings], Depends(request_context)]
"""The caller, the database and the settings (see docs/service-guide.md)."""
PathId = StoredId
"""A path parameter naming a row: either id form (docs/api-conventions.md, "Ids")."""
