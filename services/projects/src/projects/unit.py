"""What every use case of the service shares: the context type, the unit of work, the outbox."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from enum import Enum
from typing import Any, TypeAlias

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.context import Context
from distretto_shared.events import Event
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, Invalid
from projects.config import Settings
from projects.vocabulary import DomainRuleError

SOURCE = "/distretto/projects"

Ctx: TypeAlias = Context[Settings]
"""What every use case receives: the caller, the database, the settings (docs/service-guide.md)."""


@contextlib.asynccontextmanager
async def unit_of_work(ctx: Ctx) -> AsyncIterator[AsyncSession]:
    """A transaction whose unique-constraint clashes become a 409; staff only (every change of a
    project, its consortium or its work plan is the foundation's work)."""
    ctx.require_staff("change projects, consortia or work plans")
    try:
        async with ctx.db.transaction() as session:
            yield session
    except IntegrityError as exc:
        raise Conflict("this clashes with an existing record (duplicate number or id)") from exc


def emit(session: AsyncSession, event: Event, source: str = SOURCE) -> None:
    add_event(session, event, source=source)


def domain_rule(fn: Any, *args: Any) -> Any:
    """Run a domain rule; its refusal becomes a 422."""
    try:
        return fn(*args)
    except DomainRuleError as exc:
        raise Invalid(str(exc)) from exc


def plain(data: dict[str, Any]) -> dict[str, Any]:
    """Enum members as their values (the tables store plain strings)."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in data.items()}


def no_nulls(changes: dict[str, Any], fields: Iterable[str]) -> None:
    nulls = [f for f in fields if f in changes and changes[f] is None]
    if nulls:
        raise Invalid(f"{', '.join(nulls)} cannot be null")
