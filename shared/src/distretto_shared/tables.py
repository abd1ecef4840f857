"""Each service's tables on its own ``MetaData``: never SQLModel's global one.

A service declares its SQLModel base once, on a registry made here::

    class Base(SQLModel, registry=service_registry()):
        \"\"\"Base of every membership table model.\"\"\"

and every table model of the service derives from ``Base``. ``Base.metadata`` then holds
the service's tables and the backbone's (outbox, inbox): exactly what its Alembic revisions
create, what ``migrations/env.py`` autogenerates from and what the drift test compares. Two
services may name a table alike (``organisation``, ``project``) and still load side by side
in one process. The backbone's own table models live on :data:`BACKBONE`; a service's
metadata holds copies of their tables (same names and columns), added by
:func:`add_backbone_tables`.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

BACKBONE = registry()
"""The registry of the backbone's table models (outbox, inbox), shared by every service."""


class BackboneTable(SQLModel, registry=BACKBONE):
    """Base of the backbone's table models."""


def add_backbone_tables(metadata: MetaData) -> MetaData:
    """Add the backbone's tables (outbox, inbox) to a service's ``metadata``; returns it."""
    # The modules defining them import this one: imported here, once they are complete.
    from distretto_shared import inbox, outbox  # noqa: F401

    for table in BACKBONE.metadata.sorted_tables:
        if table.name not in metadata.tables:
            table.to_metadata(metadata)
    return metadata


def service_registry() -> registry:
    """A new registry for one service's table models, its metadata holding the backbone's tables."""
    return registry(metadata=add_backbone_tables(MetaData()))
