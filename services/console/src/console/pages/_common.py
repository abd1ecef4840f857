"""What several page modules share: calling a service for one panel of a page."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from console import client


class Panel:
    """One panel's data, or the reason it is missing (a service down, or not for this role)."""

    def __init__(self, data: Any = None, down: str | None = None, forbidden: bool = False) -> None:
        self.data = data
        self.down = down
        self.forbidden = forbidden

    @property
    def ok(self) -> bool:
        return self.down is None and not self.forbidden


async def panel(call: Awaitable[Any]) -> Panel:
    """Await a gateway call for a panel: a service down or a 403 becomes a panel state, not an error page."""
    try:
        return Panel(await call)
    except client.ServiceDown as exc:
        return Panel(down=exc.service)
    except client.Forbidden:
        return Panel(forbidden=True)


def items(page: Any) -> list[Any]:
    """The items of a ``Page`` answer (or a plain list)."""
    if isinstance(page, dict):
        return list(page.get("items", []))
    return list(page or [])
