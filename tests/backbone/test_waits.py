"""A background task's wait between two rounds (``distretto_shared.waits``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from distretto_shared.waits import woken


async def _rounds(wait: Callable[[asyncio.Event], Awaitable[object]], event: asyncio.Event, rounds: list[int]) -> None:
    while True:
        await wait(event)
        event.clear()
        rounds.append(1)


async def test_a_task_woken_and_stopped_in_the_same_turn_stops() -> None:
    """The stop of a service cancels its tasks; one woken by a write in that same turn of the event loop
    must still end (written with ``asyncio.wait_for`` this task survives the cancellation on Python 3.11:
    it runs another round and waits again)."""
    event, rounds = asyncio.Event(), []
    task = asyncio.create_task(_rounds(lambda e: woken(e, 3600), event, rounds))
    await asyncio.sleep(0)  # the task waits
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=30)  # a guard: it ends at once, or never
    assert task in done and task.cancelled()


async def test_woken_says_whether_it_was_woken() -> None:
    event = asyncio.Event()
    assert await woken(event, 0.01) is False
    event.set()
    assert await woken(event, 3600) is True
