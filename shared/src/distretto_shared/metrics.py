"""Prometheus metrics of the backbone, shared by every service (label ``service``).

Two rules keep what Prometheus sees true from the first scrape:

- every labelled counter is created at zero for the label values known when the service
  starts (:func:`zero`), so ``increase()`` sees the first dead letter as 0 → 1;
- gauges that describe state held elsewhere (the outbox table, the consumer groups'
  committed offsets, readiness) are refreshed when ``/metrics`` is read, by the coroutines
  registered with :func:`on_scrape` (:func:`refresh`, bounded in time: a slow source leaves
  its last value and keeps refreshing in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "distretto_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "distretto_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SERVICE_READY = Gauge(
    "distretto_service_ready", "1 when the service's database, broker and relay are ready (as /readyz)", ["service"]
)
PERIODIC_LEADER = Gauge(
    "distretto_periodic_job_leader",
    "1 in the one instance of a service that runs a periodic job (distretto_shared.leader), 0 in the others",
    ["service", "job"],
)
OUTBOX_BACKLOG = Gauge("distretto_outbox_backlog", "Outbox rows not yet published (read at scrape)", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "distretto_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row, 0 when none (read at scrape)",
    ["service"],
)
OUTBOX_PUBLISHED = Counter("distretto_outbox_published_total", "Outbox events published", ["service"])
OUTBOX_PUBLISH_LATENCY = Histogram(
    "distretto_outbox_publish_latency_seconds",
    "Time from the outbox commit to the broker's acknowledgement",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTBOX_PUBLISH_ERRORS = Counter("distretto_outbox_publish_errors_total", "Failed outbox publish attempts", ["service"])
INBOX_DUPLICATES = Counter(
    "distretto_inbox_duplicates_total", "Redelivered events skipped by the inbox", ["service", "consumer"]
)
EVENTS_HANDLED = Counter(
    "distretto_events_handled_total", "Events handled by a consumer", ["service", "consumer", "event_type"]
)
EVENTS_IGNORED = Counter(
    "distretto_events_ignored_total",
    "Events of a type this consumer does not handle",
    ["service", "consumer", "event_type"],
)
REPLAYS_SKIPPED = Counter(
    "distretto_replays_skipped_total",
    "Replayed dead letters addressed to another consumer group, skipped",
    ["service", "consumer"],
)
CONSUMER_RETRIES = Counter(
    "distretto_consumer_retries_total", "Handler attempts that failed and were retried", ["service", "topic"]
)
DEAD_LETTER_KINDS = ("invalid", "rejected", "failed")
"""``reason`` of a dead letter: undecodable, refused by the handler, retries exhausted."""
LOG_RECORDS_SUPPRESSED = Counter(
    "distretto_log_records_suppressed_total",
    "Repeated log lines of a library left out of the log (the next one written carries the count)",
    ["service", "logger"],
)
DEAD_LETTERS = Counter(
    "distretto_dead_letters_total",
    "Messages sent to a dead-letter topic",
    ["service", "consumer", "topic", "reason"],
)
CONSUMER_LAG = Gauge(
    "distretto_consumer_lag",
    "Records between the group's committed offset and the partition's end (read at scrape)",
    ["service", "consumer", "topic", "partition"],
)


def zero(counter: Counter, *label_sets: Iterable[str]) -> None:
    """Create ``counter``'s children at 0 for every combination of the given label values."""
    for values in itertools.product(*[list(s) for s in label_sets]):
        counter.labels(*values)


# -- scrape-time refresh -----------------------------------------------------------------

ScrapeHook = Callable[[], Awaitable[None]]


class _Hook:
    def __init__(self, fn: ScrapeHook, min_interval: float) -> None:
        self.fn = fn
        self.min_interval = min_interval
        self.task: asyncio.Task[None] | None = None
        self.last = 0.0

    async def run(self) -> None:
        try:
            await self.fn()
        finally:
            self.last = time.monotonic()


_hooks: list[_Hook] = []


def on_scrape(fn: ScrapeHook, *, min_interval: float = 0.0) -> Callable[[], None]:
    """Run ``fn`` before ``/metrics`` answers (at most every ``min_interval`` s); returns the remover."""
    hook = _Hook(fn, min_interval)
    _hooks.append(hook)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _hooks.remove(hook)
        if hook.task is not None and not hook.task.done():
            hook.task.cancel()

    return remove


async def refresh(timeout: float = 1.0) -> None:
    """Run the scrape hooks concurrently; wait at most ``timeout`` s (slow ones finish in the background)."""
    now = time.monotonic()
    waiting: list[asyncio.Task[None]] = []
    for hook in list(_hooks):
        if hook.task is None or hook.task.done():
            if now - hook.last < hook.min_interval:
                continue
            hook.task = asyncio.create_task(hook.run(), name="metrics-refresh")
            hook.task.add_done_callback(_swallow)
        waiting.append(hook.task)
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)


def _swallow(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed refresh leaves the last value, the next scrape retries


__all__ = [
    "CONSUMER_LAG",
    "CONSUMER_RETRIES",
    "DEAD_LETTERS",
    "DEAD_LETTER_KINDS",
    "EVENTS_HANDLED",
    "EVENTS_IGNORED",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "INBOX_DUPLICATES",
    "OUTBOX_BACKLOG",
    "OUTBOX_OLDEST_AGE",
    "OUTBOX_PUBLISHED",
    "OUTBOX_PUBLISH_ERRORS",
    "OUTBOX_PUBLISH_LATENCY",
    "REGISTRY",
    "REPLAYS_SKIPPED",
    "SERVICE_READY",
    "on_scrape",
    "refresh",
    "zero",
]
