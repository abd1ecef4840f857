"""Pure rules: the public projection, the scrub of free text, SSE framing, webhook signing and retries."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import re
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from standardwebhooks.webhooks import Webhook

from distretto_shared.contracts import matchmaking as mm
from distretto_shared.contracts import membership as ms
from distretto_shared.contracts import newsletter as nl
from distretto_shared.contracts import projects as pj
from distretto_shared.contracts import public as pub

PROJECTION_NAMESPACE = uuid.UUID("6b1f4a52-61c8-4d0c-9a63-3c0a4e5b2d11")

ORGANISATION_PUBLIC_FIELDS = ("name", "kind", "sectors", "province", "size_class")

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w/])(?:\+|00)?\d[\d ().-]{7,}\d(?![\w/])")
REDACTED = "[redacted]"


def scrub(text: str) -> str:
    """Free text with e-mail addresses and phone numbers replaced (a second guard: the producers'
    texts are curated or anonymised already, but a public topic must never carry such a value)."""
    return _PHONE.sub(REDACTED, _EMAIL.sub(REDACTED, text))


def scrub_list(values: Sequence[str]) -> list[str]:
    """``scrub`` of each item."""
    return [scrub(v) for v in values]


def public_event_id(internal_id: str, public_type: str) -> str:
    """The public event's CloudEvents id: derived from the internal event's, so re-projecting the
    same input (a replay of the internal topic) yields the same id and partners can deduplicate."""
    return str(uuid.uuid5(PROJECTION_NAMESPACE, f"{internal_id}/{public_type}"))


def organisation_fields(profile: ms.OrganisationProfile) -> dict[str, Any]:
    """The public fields of an organisation's profile."""
    return {
        "organisation_id": profile.organisation_id,
        "name": scrub(profile.name),
        "kind": profile.kind,
        "sectors": sorted(profile.sectors),
        "province": profile.province,
        "size_class": profile.size_class,
    }


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Which public organisation fields differ."""
    return [f for f in ORGANISATION_PUBLIC_FIELDS if before.get(f) != after.get(f)]


def project_registered(project: pj.ProjectSummary) -> pub.ProjectRegistered:
    """The CORDIS-public view of a project."""
    return pub.ProjectRegistered(
        project_id=project.project_id,
        acronym=scrub(project.acronym),
        title=scrub(project.title),
        status=project.status,
        framework_programme=project.framework_programme,
        funding_scheme=project.funding_scheme,
        topics=project.topics,
        keywords=scrub_list(project.keywords),
        start_date=project.start_date,
        end_date=project.end_date,
        member_organisation_ids=project.member_organisation_ids,
    )


def deliverable_submitted(event: pj.DeliverableSubmitted, acronym: str) -> pub.DeliverableSubmitted:
    """A submitted deliverable, public view."""
    return pub.DeliverableSubmitted(
        project_id=event.project_id,
        acronym=scrub(event.acronym or acronym),
        deliverable_id=event.deliverable_id,
        number=scrub(event.number),
        title=scrub(event.title),
        due_date=event.due_date,
        submitted_on=event.submitted_on,
    )


def opportunity_published(event: mm.OpportunityPublished) -> pub.OpportunityPublished:
    """Matchmaking's anonymised view, without the owner organisation."""
    return pub.OpportunityPublished(
        opportunity_id=event.opportunity_id,
        opportunity_type=event.opportunity_type,
        title=scrub(event.title),
        summary=scrub(event.summary),
        keywords=scrub_list(event.keywords),
        sectors=event.sectors,
        country=event.country,
        expires_on=event.expires_on,
        topic_code=event.topic_code,
    )


def figures_changed(event: ms.DistrictFiguresChanged) -> pub.DistrictFiguresChanged:
    """The district's aggregates (the public figures page's numbers)."""
    return pub.DistrictFiguresChanged(
        computed_at=event.computed_at,
        year=event.year,
        members_total=event.members_total,
        by_kind=event.by_kind,
        by_sector=event.by_sector,
        by_size_class=event.by_size_class,
        companies=event.companies,
        staff=event.staff,
        rd_staff=event.rd_staff,
        turnover_eur=event.turnover_eur,
        lab_m2=event.lab_m2,
        patents=event.patents,
    )


# --- the wire format partners see on SSE and webhooks: a structured-mode CloudEvent


def envelope(*, event_id: str, event_type: str, source: str, subject: str, time: str, payload: str) -> str:
    """A structured-mode CloudEvent (JSON) — what SSE ``data`` and a webhook body carry."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": event_type,
            "subject": subject,
            "time": time,
            "datacontenttype": "application/json",
            "data": json.loads(payload),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def sse_frame(seq: int, event_type: str, data: str) -> bytes:
    """One server-sent event: ``id`` is the log position (the client's ``Last-Event-ID``)."""
    # The JSON has no newline (json.dumps without indent), so one data line carries it.
    return f"id: {seq}\nevent: {event_type}\ndata: {data}\n\n".encode()


HEARTBEAT = b": heartbeat\n\n"


def parse_last_event_id(value: str | None) -> int:
    """The position to resume after (0 = from the beginning); ValueError when malformed."""
    if value is None or value.strip() == "":
        return 0
    seq = int(value.strip())
    if seq < 0:
        raise ValueError("negative position")
    return seq


# --- webhooks


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 32 random bytes."""
    import base64
    import os

    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """``webhook-signature``: one ``v1,<base64>`` per valid secret, space-separated (rotation)."""
    return " ".join(Webhook(s).sign(msg_id, timestamp, body) for s in secrets)


def next_attempt(attempts_made: int, schedule: Sequence[float], now: datetime) -> datetime | None:
    """When to try again after ``attempts_made`` failed attempts; ``None`` = give up (failed)."""
    if attempts_made > len(schedule):
        return None
    return now + timedelta(seconds=float(schedule[attempts_made - 1]))


def should_disable(failing_since: datetime | None, now: datetime, after_seconds: float) -> bool:
    """An endpoint failing since longer than ``after_seconds`` without a success gets disabled."""
    return failing_since is not None and (now - failing_since).total_seconds() >= after_seconds


def campaign_published(event: nl.CampaignPublished) -> pub.CampaignPublished:
    """A published newsletter issue: subject and web link (scrubbed like every free text)."""
    return pub.CampaignPublished(
        campaign_id=event.campaign_id,
        subject_line=scrub(event.subject_line),
        web_url=public_link(event.web_url),
        published_at=event.published_at,
    )


def public_link(url: str) -> str:
    """A link without what could identify a reader: no query, fragment or credentials, and no path
    that carries an e-mail address or a phone number (then only the site's root)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return ""
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    path = parts.path if scrub(unquote(parts.path)) == unquote(parts.path) else "/"
    return urlunsplit((parts.scheme, host, path or "/", "", ""))


def is_internal(address: str) -> bool:
    """Whether an IP address is one a webhook must never be sent to from inside the platform:
    loopback, private (RFC 1918, unique-local), link-local (cloud metadata), shared (CGNAT),
    multicast, reserved or unspecified — IPv4-mapped IPv6 judged by its IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.IPv4Network("100.64.0.0/10"))
        or not ip.is_global
    )


async def internal_address_problem(host: str, port: int) -> str | None:
    """Why a receiver host may not be called (an internal address, or a name that resolves to
    one or to nothing), or None. Every address a name resolves to must be public."""
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = [host]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return f"the host {host} does not resolve"
        addresses = sorted({str(info[4][0]) for info in infos})
        if not addresses:
            return f"the host {host} does not resolve"
    internal = [a for a in addresses if is_internal(a)]
    if internal:
        return f"{host} is an internal address ({', '.join(internal)})"
    return None


def email_sha256(email: str) -> str:
    """SHA-256 of the lower-cased, trimmed address: how an erased person is found (membership's ContactErased)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()
