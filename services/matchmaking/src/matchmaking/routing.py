"""What the routes of every aggregate share: the request context and the common parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query

from distretto_shared import conventions
from distretto_shared.context import Context, public_request_context, request_context
from distretto_shared.web import Paging
from matchmaking.config import Settings

_ID_PATH = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
Id = Annotated[conventions.HexId, _ID_PATH]
"""An id of this service's own (opportunity, match) in a path: either form (dashed or 32-hex) is
taken and looked up in its 32-hex storage form; documented as ``format: uuid`` (docs/api-conventions.md,
"Ids"). Any other text is an unknown id: 404."""
OrganisationId = Annotated[conventions.Id, _ID_PATH]
"""An organisation's id in a path: either form, looked up dashed (membership's form, as its events
carry it); documented as ``format: uuid``."""
PageDep = Paging
"""The backbone's ``?limit=&offset=`` dependency (``distretto_shared.web.Paging``)."""
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
