"""Event contracts and their binary-mode CloudEvents encoding on Kafka.

Every event type is a pydantic model deriving from :class:`Event`, declared in
``distretto_shared.contracts.<producing service>`` with its CloudEvents type
name, version, topic and the field holding the aggregate id (the Kafka key and
``ce_subject``). Consumers ignore unknown fields; a breaking change is a new
version (``….v2``) and a new class.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_SOURCE = "ce_source"
H_TYPE = "ce_type"
H_TIME = "ce_time"
H_SUBJECT = "ce_subject"
H_CONTENT_TYPE = "content-type"
H_CORRELATION = "correlation_id"
H_TRACEPARENT = "traceparent"
REQUIRED_HEADERS = (H_SPECVERSION, H_ID, H_SOURCE, H_TYPE)


class Event(BaseModel):
    """Base of every event contract."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    """CloudEvents ``type``, e.g. ``distretto.membership.organisation.joined.v1``."""
    topic: ClassVar[str]
    """Kafka topic, ``<service>.<aggregate>.v<N>``."""
    subject_field: ClassVar[str]
    """Name of the field whose value is the aggregate id."""

    def subject(self) -> str:
        """The aggregate id: Kafka key and ``ce_subject``."""
        return str(getattr(self, self.subject_field))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            existing = EVENT_TYPES.get(cls.event_type)
            if existing is not None and existing is not cls:
                raise TypeError(f"event type {cls.event_type} declared twice")
            EVENT_TYPES[cls.event_type] = cls


EVENT_TYPES: dict[str, type[Event]] = {}


def new_traceparent() -> str:
    """A fresh W3C traceparent (version 00, sampled)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def encode(
    event: Event,
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
    correlation_id: str | None = None,
    traceparent: str | None = None,
) -> tuple[str, dict[str, str], bytes]:
    """Encode an event as (key, CloudEvents headers, JSON body)."""
    eid = event_id or str(uuid.uuid4())
    headers = {
        H_SPECVERSION: SPECVERSION,
        H_ID: eid,
        H_SOURCE: source,
        H_TYPE: event.event_type,
        H_TIME: (time or datetime.now(UTC)).isoformat(),
        H_SUBJECT: event.subject(),
        H_CONTENT_TYPE: CONTENT_TYPE,
        H_CORRELATION: correlation_id or eid,
        H_TRACEPARENT: traceparent or new_traceparent(),
    }
    return event.subject(), headers, event.model_dump_json().encode()


class PermanentEventError(Exception):
    """A message that can never be handled: it goes to the dead-letter topic at once."""


@dataclass(frozen=True)
class EventMeta:
    """The CloudEvents attributes of a received event."""

    id: str
    source: str
    type: str
    time: str | None
    subject: str | None
    correlation_id: str | None
    traceparent: str | None
    headers: dict[str, str] = field(default_factory=dict)


def decode_headers(raw: Any) -> dict[str, str]:
    """Kafka headers (list of (name, bytes)) as a dict of str."""
    out: dict[str, str] = {}
    for name, value in raw or ():
        if isinstance(value, bytes | bytearray):
            try:
                out[name] = bytes(value).decode()
            except UnicodeDecodeError as exc:
                raise PermanentEventError(f"header {name!r} is not UTF-8") from exc
        elif value is not None:
            out[name] = str(value)
    return out


def decode(headers: dict[str, str], body: bytes | None) -> tuple[EventMeta, Event]:
    """Parse a received message into its metadata and event.

    Raises :class:`PermanentEventError` when the message can never be handled:
    CloudEvents headers missing, unknown type, body not JSON, or the body fails
    the contract's validation.
    """
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        raise PermanentEventError(f"missing CloudEvents headers: {', '.join(missing)}")
    if headers[H_SPECVERSION] != SPECVERSION:
        raise PermanentEventError(f"unsupported ce_specversion {headers[H_SPECVERSION]!r}")
    ce_type = headers[H_TYPE]
    cls = EVENT_TYPES.get(ce_type)
    if cls is None:
        import distretto_shared.contracts  # noqa: F401  (registers every Distretto event type)

        cls = EVENT_TYPES.get(ce_type)
    if cls is None:
        raise PermanentEventError(f"unknown event type {ce_type!r}")
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PermanentEventError(f"body is not JSON: {exc}") from exc
    try:
        event = cls.model_validate(data)
    except ValidationError as exc:
        raise PermanentEventError(f"body fails {ce_type}: {exc.errors(include_url=False)}") from exc
    meta = EventMeta(
        id=headers[H_ID],
        source=headers[H_SOURCE],
        type=ce_type,
        time=headers.get(H_TIME),
        subject=headers.get(H_SUBJECT),
        correlation_id=headers.get(H_CORRELATION),
        traceparent=headers.get(H_TRACEPARENT),
        headers=headers,
    )
    return meta, event


def json_schemas() -> dict[str, Any]:
    """JSON schema of every registered event type, keyed by type name (for the snapshot test)."""
    return {name: cls.model_json_schema() for name, cls in sorted(EVENT_TYPES.items())}
