"""How a service's background task waits between two rounds: until an event is set, or at most so long.

``asyncio.timeout`` around ``event.wait()``, never ``asyncio.wait_for``: on Python 3.11 ``wait_for``
returns the awaited result when it completes in the same turn of the event loop as the task's
cancellation, and the cancellation is lost — a service stopping just after a write that woke one of
its tasks then waited for that task for ever (found in matchmaking's index tasks).
"""

from __future__ import annotations

import asyncio


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set (True) or ``seconds`` have passed (False); a cancellation of the
    waiting task always goes through."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
