"""The partners service's own metrics (label-free)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

STREAMS_OPEN = Gauge("distretto_partners_streams_open", "Server-sent event streams open in this process")
STREAM_BUFFERED = Gauge(
    "distretto_partners_stream_buffered_events",
    "Events read from the log by this process's streams and not yet handed to their connections "
    "(at most stream_batch_size per stream: a slow client holds no more)",
)
STREAM_SENT = Counter("distretto_partners_stream_events_sent_total", "Events written to server-sent event streams")
NOTICES_SENT = Counter("distretto_partners_notices_sent_total", "Partners told by e-mail that an endpoint was disabled")
