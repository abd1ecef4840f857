"""What every use case of the service shares: its context, after-commit hooks, today."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.context import Context
from matchmaking.config import Settings

Ctx = Context[Settings]
"""What every use case receives: the caller, the database, the settings, and the ranking
``Engine`` and ``Encoder`` singletons (``ctx.get(Engine)``), provided at start-up."""


def after_commit(session: AsyncSession, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the session's transaction committed (never on rollback)."""
    pending: list[Callable[[], None]] = session.info.setdefault("matchmaking_after_commit", [])
    if not pending:

        def run(_session: Any) -> None:
            for callback in session.info.pop("matchmaking_after_commit", []):
                callback()

        event.listen(session.sync_session, "after_commit", run, once=True)
    pending.append(fn)


def today() -> date:
    """Today in UTC."""
    return datetime.now(UTC).date()
