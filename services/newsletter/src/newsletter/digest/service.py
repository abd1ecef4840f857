"""The digest: items gathered from other services' events, and the digest campaign built from them."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from newsletter import segments
from newsletter.campaigns.models import Campaign, CampaignPublic
from newsletter.campaigns.service import campaign_public, start_in
from newsletter.context import Ctx, wake
from newsletter.digest.models import DigestItem
from newsletter.lists.service import ensure_members_list
from newsletter.templates.models import Template


async def add_digest_item(
    session: AsyncSession,
    *,
    kind: str,
    ref: str,
    title: str,
    detail: str = "",
    occurred_on: date | None = None,
    sectors: list[str] | None = None,
) -> None:
    """Keep one line for the next digest (an event seen twice adds nothing)."""
    if (await session.execute(select(DigestItem.id).where(DigestItem.ref == ref))).first() is None:
        tags = list(dict.fromkeys(" ".join(x.split()).lower()[:200] for x in sectors or [] if x.strip()))[:50]
        session.add(
            DigestItem(
                kind=kind, ref=ref, title=title[:500], detail=detail[:2000], occurred_on=occurred_on, sectors=tags
            )
        )


DIGEST_TEMPLATE = "Digest (built-in)"
DIGEST_HTML = """<h1>{{ campaign.name }}</h1>
{% for section in campaign.data.sections %}<h2>{{ section.title }}</h2><ul>
{% for item in section["items"] %}<li><b>{{ item.title }}</b>{% if item.detail %} — {{ item.detail }}{% endif %}</li>
{% endfor %}</ul>{% endfor %}"""
DIGEST_TEXT = """{{ campaign.name }}
{% for section in campaign.data.sections %}
{{ section.title }}
{% for item in section["items"] %}- {{ item.title }}{% if item.detail %} — {{ item.detail }}{% endif %}
{% endfor %}{% endfor %}"""
SECTIONS = [
    ("new_member", "New members"),
    ("milestone", "Project milestones"),
    ("deadline", "Deadlines"),
    ("project", "New projects"),
    ("opportunity", "Matchmaking opportunities"),
]


async def build_digest(ctx: Ctx) -> CampaignPublic | None:
    """Gather the lines kept since the last digest into a campaign to the members list (draft or started)."""
    settings = ctx.settings
    async with ctx.db.transaction() as session:
        items = (
            (
                await session.execute(
                    select(DigestItem).where(col(DigestItem.campaign_id).is_(None)).order_by(col(DigestItem.created_at))
                )
            )
            .scalars()
            .all()
        )
        if not items:
            return None
        template = (
            await session.execute(select(Template).where(Template.name == DIGEST_TEMPLATE))
        ).scalar_one_or_none()
        if template is None:
            template = Template(
                name=DIGEST_TEMPLATE, subject="{{ campaign.name }}", body_html=DIGEST_HTML, body_text=DIGEST_TEXT
            )
            session.add(template)
        members = await ensure_members_list(session, settings)

        def sections_for(target: segments.Segment | None) -> list[dict[str, Any]]:
            sections = []
            for kind, title in SECTIONS:
                lines = [
                    {"title": i.title, "detail": i.detail}
                    for i in items
                    if i.kind == kind and (target is None or segments.keeps_line(target, kind, list(i.sectors or [])))
                ]
                if lines:
                    sections.append({"title": title, "items": lines})
            return sections

        # Segments marked ``digest``: one campaign per segment, to its members only, with the lines that
        # concern it (a segment left with no line gets no digest); none marked: the whole list, every line.
        targets: list[segments.Segment | None] = [*await segments.digest_segments(session)] or [None]
        built: list[Campaign] = []
        for target in targets:
            sections = sections_for(target)
            if not sections:
                continue
            name = f"Cluster digest {date.today().isoformat()}"
            c = Campaign(
                name=f"{name} — {target.name}" if target is not None else name,
                subject="{{ campaign.name }}",
                template_id=template.id,
                lists=[members.id],
                segments=[target.id] if target is not None else [],
                data={"sections": sections},
                kind="digest",
            )
            session.add(c)
            await session.flush()
            built.append(c)
        if not built:
            return None  # the lines wait for a segment they concern
        for i in items:
            i.campaign_id = built[0].id
        if settings.digest_mode == "send":
            for c in built:
                await start_in(session, ctx, c)
        out = await campaign_public(session, built[0], stats=False)
    wake(ctx)
    return out
