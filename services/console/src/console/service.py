"""The console's own use cases: reading the activity feed, trimming it."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, delete, func, select

from console.models import Activity


def _audiences(staff: bool) -> list[str]:
    return ["public", "staff"] if staff else ["public"]


async def latest_activity(db: Any, staff: bool, limit: int = 15) -> list[Activity]:
    """The newest events the reader may see, newest first."""
    async with db.read() as session:
        rows = await session.execute(
            select(Activity)
            .where(col(Activity.audience).in_(_audiences(staff)), col(Activity.kind) != "figures.changed")
            .order_by(col(Activity.id).desc())
            .limit(limit)
        )
        return list(rows.scalars().all())


async def activity_after(db: Any, after: int, staff: bool, limit: int = 50) -> list[Activity]:
    """Events newer than ``after`` (oldest first), for the live stream."""
    return await db.read_after(Activity.id, after, limit, col(Activity.audience).in_(_audiences(staff)))


async def last_activity_id(db: Any) -> int:
    async with db.read() as session:
        found = (await session.execute(select(func.max(Activity.id)))).scalar_one_or_none()
    return int(found or 0)


async def trim_activity(db: Any, keep: int) -> None:
    """Keep the newest ``keep`` rows (a periodic job)."""
    newest = await last_activity_id(db)
    if newest > keep:
        async with db.transaction() as session:
            await session.execute(delete(Activity).where(col(Activity.id) <= newest - keep))
