"""The search index follows the database: opportunities and competence profiles as index documents,
embedded and upserted once their transaction committed."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from matchmaking.common import Ctx, after_commit
from matchmaking.matches.models import (
    Match,
)
from matchmaking.opportunities.domain import OpportunityStatus
from matchmaking.opportunities.models import (
    Opportunity,
)
from matchmaking.profiles.models import Organisation, Project
from matchmaking.search.document import Document
from matchmaking.search.embeddings import Encoder
from matchmaking.search.engine import Engine

INDEX_DOCUMENTS = Gauge("distretto_matchmaking_index_documents", "Documents in the ranking index", ["kind"])

PROFILE = "profile"
OPPORTUNITY = "opportunity"


# -- documents -----------------------------------------------------------------------------


def opportunity_fields(o: Opportunity) -> dict[str, str]:
    """The texts of an opportunity the index searches, by field."""
    return {
        "title": o.title,
        "summary": o.summary,
        "keywords": "; ".join(o.keywords),
        "technology": "; ".join(o.technology_fields),
        "market": "; ".join(o.market_fields),
        "topic": o.topic_code or "",
    }


def opportunity_text(o: Opportunity) -> str:
    """The text embedded for an opportunity (most telling parts first: the model reads 256 tokens)."""
    parts = [o.title + ".", "Keywords: " + ", ".join(o.keywords) + "." if o.keywords else "", o.summary]
    if o.technology_fields:
        parts.append("Technology: " + ", ".join(o.technology_fields) + ".")
    if o.market_fields:
        parts.append("Market: " + ", ".join(o.market_fields) + ".")
    return " ".join(p for p in parts if p)


def opportunity_document(o: Opportunity, vector: Any) -> Document:
    """An opportunity as an index document."""
    return Document(
        key=f"{OPPORTUNITY}:{o.id}",
        kind=OPPORTUNITY,
        entity_id=o.id,
        fields=opportunity_fields(o),
        vector=vector,
        opportunity_type=o.opportunity_type,
        sectors=tuple(o.sectors),
        country=o.country,
        owner_id=o.owner_organisation_id,
        expires_on=o.expires_on,
        active=o.status == OpportunityStatus.ACTIVE,
    )


def project_text(projects: list[Project]) -> str:
    """Titles, objectives, topics and keywords of an organisation's projects."""
    chunks = []
    for p in projects:
        chunk = f"{p.acronym}: {p.title}. {p.objective}"
        if p.topics:
            chunk += " Topics: " + ", ".join(p.topics) + "."
        if p.keywords:
            chunk += " Keywords: " + ", ".join(p.keywords) + "."
        chunks.append(chunk.strip())
    return "\n".join(chunks)


def profile_fields(org: Organisation, projects: list[Project]) -> dict[str, str]:
    """The texts of a competence profile the index searches, by field."""
    return {
        "description": org.description,
        "competences": "; ".join(org.competences),
        "keywords": "; ".join(org.keywords),
        "projects": project_text(projects),
    }


def profile_text(org: Organisation, projects: list[Project]) -> str:
    """The text embedded for a competence profile."""
    parts = []
    if org.competences:
        parts.append("Competences: " + ", ".join(org.competences) + ".")
    if org.keywords:
        parts.append("Keywords: " + ", ".join(org.keywords) + ".")
    parts.append(org.description)
    parts += [f"{p.title}." for p in projects]
    parts += [", ".join(p.keywords) for p in projects if p.keywords]
    return " ".join(p for p in parts if p)


def profile_document(org: Organisation, projects: list[Project], vector: Any) -> Document:
    """A competence profile as an index document."""
    return Document(
        key=f"{PROFILE}:{org.organisation_id}",
        kind=PROFILE,
        entity_id=org.organisation_id,
        fields=profile_fields(org, projects),
        vector=vector,
        org_kind=org.kind,
        sectors=tuple(org.sectors),
        country=org.country,
        owner_id=org.organisation_id,
        active=org.status == "active",
    )


async def embed(ctx: Ctx, text: str) -> Any:
    return await asyncio.to_thread(ctx.get(Encoder).encode_one, text)


def update_gauges(ctx: Ctx) -> None:
    INDEX_DOCUMENTS.labels(OPPORTUNITY).set(ctx.get(Engine).index.count(OPPORTUNITY))
    INDEX_DOCUMENTS.labels(PROFILE).set(ctx.get(Engine).index.count(PROFILE))


def index_later(session: AsyncSession, ctx: Ctx, doc: Document | None, remove_key: str | None = None) -> None:
    def apply() -> None:
        if doc is not None:
            ctx.get(Engine).upsert(doc)
        elif remove_key is not None:
            ctx.get(Engine).remove(remove_key)
        update_gauges(ctx)

    after_commit(session, apply)


def query_key(match: Match) -> str:
    return f"{OPPORTUNITY}:{match.opportunity_id}"


def counterpart_key(match: Match) -> str:
    return f"{match.counterpart_type}:{match.counterpart_id}"
