"""What every use case of the service shares: its context, after-commit hooks, today."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from distretto_shared.context import Context
from matchmaking.config import Settings

Ctx = Context[Settings]
"""What every use case receives: the caller, the database, the settings, and the ranking
``Engine`` and ``Encoder`` singletons (``ctx.get(Engine)``), provided at start-up."""


_AFTER_COMMIT = "matchmaking_after_commit"


def after_commit(session: AsyncSession, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the session's transaction committed (never on rollback)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(fn)


# Listeners on the Session class, not one registered per session: SQLAlchemy builds an instance's own
# listener collections on its first ``event.listen``, which cost a write request more than the callbacks.
@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def today() -> date:
    """Today in UTC."""
    return datetime.now(UTC).date()
