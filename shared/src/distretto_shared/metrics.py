"""Prometheus metrics of the backbone, shared by every service (label ``service``)."""

from __future__ import annotations

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
OUTBOX_BACKLOG = Gauge("distretto_outbox_backlog", "Outbox rows not yet published", ["service"])
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
CONSUMER_RETRIES = Counter(
    "distretto_consumer_retries_total", "Handler attempts that failed and were retried", ["service", "topic"]
)
DEAD_LETTERS = Counter(
    "distretto_dead_letters_total", "Messages sent to a dead-letter topic", ["service", "topic", "reason"]
)
CONSUMER_LAG = Gauge("distretto_consumer_lag", "Messages behind the partition's end", ["service", "topic", "partition"])

__all__ = [
    "CONSUMER_LAG",
    "CONSUMER_RETRIES",
    "DEAD_LETTERS",
    "EVENTS_HANDLED",
    "EVENTS_IGNORED",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "INBOX_DUPLICATES",
    "OUTBOX_BACKLOG",
    "OUTBOX_PUBLISHED",
    "OUTBOX_PUBLISH_ERRORS",
    "OUTBOX_PUBLISH_LATENCY",
    "REGISTRY",
]
