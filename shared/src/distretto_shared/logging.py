"""Logging: every line a process writes is one JSON object.

structlog renders our own log calls; the standard library's loggers (aiokafka, httpx,
uvicorn, alembic, bm25s, asyncio …) go through structlog's ``ProcessorFormatter`` on the root
logger, so they come out as the same JSON lines with the same fields (``service``,
``correlation_id``, ``event_id`` when bound). An exception is a field (``exception``: the
formatted traceback), never lines of its own; uncaught exceptions and ``warnings`` are logged
the same way. ``log_json=False`` renders the same events for a terminal instead.

A Kafka client library repeats itself while the broker is away: aiokafka writes two or three
error lines per consumer and producer every 100 ms (about 100 lines a second from a service with
five consumers; 5 MB in three minutes). :class:`RepeatFilter` lets the first line of each kind
through, then one per ``log_repeat_interval`` seconds carrying ``suppressed``, the number left out
in between, and counts them in ``distretto_log_records_suppressed_total``. Hand-written: the one
maintained filter for this (``ratelimitingfilter``) tells kinds apart by comparing each rendered
message with every earlier one (``difflib``), keeps a bucket per distinct message forever, and
appends its count to the text; a kind here is the logger and the message's template, a bounded set.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import structlog

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)

# Loggers that configure their own handlers (uvicorn's dictConfig): ours replace them.
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_QUIET = ("aiokafka", "kafka", "sqlalchemy.engine", "alembic", "httpx", "httpcore", "asyncio", "faststream")
# Libraries whose repeated lines are thinned by RepeatFilter (their loggers and the loggers below them).
_REPEATING = ("aiokafka", "kafka")


class RepeatFilter(logging.Filter):
    """Thins a library's repeated lines: per kind (logger, level and message template, not the
    formatted text), the first record passes; later ones within ``interval`` seconds of the last
    one written are left out and counted; the first after that passes with ``suppressed`` (the
    count) and opens the next interval. Records of other loggers always pass."""

    MAX_KINDS = 1024
    """A bound on the kinds remembered (templates are a finite set of code literals; the bound only
    guards against a library that formats its message before logging it)."""

    def __init__(
        self,
        interval: float,
        prefixes: tuple[str, ...] = _REPEATING,
        clock: Callable[[], float] = time.monotonic,
        on_suppressed: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.prefixes = prefixes
        self.clock = clock
        self.on_suppressed = on_suppressed
        self._kinds: dict[tuple[str, int, str], list[float]] = {}  # kind -> [time written, left out since]
        self._lock = threading.Lock()

    def _thinned(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.interval <= 0 or not self._thinned(record.name):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                left_out = True
            else:
                if seen is None and len(self._kinds) >= self.MAX_KINDS:
                    self._kinds.clear()
                if seen is not None and seen[1]:
                    record.suppressed = int(seen[1])
                self._kinds[kind] = [now, 0]
                left_out = False
        if left_out and self.on_suppressed is not None:
            self.on_suppressed(record.name)
        return not left_out


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _add_logger_name(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
    if event_dict.get("message") == event_dict.get("event"):
        event_dict.pop("message", None)  # set by an earlier formatter on the same record
    event_dict.pop("color_message", None)  # uvicorn's terminal variant of the same message
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool = True, repeat_interval: float = 30.0) -> None:
    """Configure structlog and the standard library's root logger for this process (idempotent).

    Every line carries ``service``; ``event_id`` and ``correlation_id`` are bound through
    :func:`structlog.contextvars.bind_contextvars` while an event or a request is handled.
    A Kafka library's line repeated within ``repeat_interval`` seconds is left out and counted
    (:class:`RepeatFilter`; 0 writes every one).
    """
    from distretto_shared.metrics import LOG_RECORDS_SUPPRESSED

    def suppressed(logger: str) -> None:
        LOG_RECORDS_SUPPRESSED.labels(service, logger).inc()

    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    exceptions: list[Any] = [structlog.processors.format_exc_info] if json else []
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            *exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder(), _add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exceptions,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatFilter(repeat_interval, on_suppressed=suppressed))
    root = logging.getLogger()
    for old in list(root.handlers):
        if not type(old).__module__.startswith("_pytest"):  # keep pytest's capture
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_thread
    structlog.contextvars.bind_contextvars(service=service)


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("distretto").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)
