"""Use cases of templates."""

from __future__ import annotations

from sqlmodel import col, func, select

from distretto_shared.conventions import canonical_id
from distretto_shared.web import Conflict, Invalid, NotFound, PageParams
from newsletter.context import Ctx
from newsletter.delivery import rendering
from newsletter.tables import utcnow
from newsletter.templates.models import Template, TemplateCreate, TemplatePublic, TemplateUpdate

# -- templates -----------------------------------------------------------------------


def check_template_fields(subject: str | None, html: str | None, text: str | None) -> None:
    problems = {}
    for name, value, is_html in (("subject", subject, False), ("body_html", html, True), ("body_text", text, False)):
        if value is None:
            continue
        try:
            rendering.check_template(value, html=is_html)
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise Invalid("; ".join(f"{k}: {v}" for k, v in problems.items()), details=problems)


async def create_template(ctx: Ctx, data: TemplateCreate) -> TemplatePublic:
    check_template_fields(data.subject, data.body_html, data.body_text)
    async with ctx.db.transaction() as session:
        if (await session.execute(select(Template).where(Template.name == data.name))).first():
            raise Conflict(f"a template named {data.name!r} already exists")
        row = Template(**data.model_dump())
        session.add(row)
    return TemplatePublic(**row.model_dump())


async def update_template(ctx: Ctx, template_id: str, data: TemplateUpdate) -> TemplatePublic:
    check_template_fields(data.subject, data.body_html, data.body_text)
    async with ctx.db.transaction() as session:
        row = await session.get(Template, template_id)
        if row is None:
            raise NotFound(f"no template {canonical_id(template_id)!r}")
        changes = data.model_dump(exclude_unset=True, exclude_none=True)
        renamed = "name" in changes and changes["name"] != row.name
        if renamed and (await session.execute(select(Template).where(Template.name == changes["name"]))).first():
            raise Conflict(f"a template named {changes['name']!r} already exists")
        for k, v in changes.items():
            setattr(row, k, v)
        row.updated_at = utcnow()
    return TemplatePublic(**row.model_dump())


async def get_template(ctx: Ctx, template_id: str) -> TemplatePublic:
    async with ctx.db.read() as session:
        row = await session.get(Template, template_id)
        if row is None:
            raise NotFound(f"no template {canonical_id(template_id)!r}")
        return TemplatePublic(**row.model_dump())


async def list_templates(ctx: Ctx, page: PageParams) -> tuple[list[TemplatePublic], int]:
    async with ctx.db.read() as session:
        total = (await session.execute(select(func.count()).select_from(Template))).scalar_one()
        rows = (
            (await session.execute(select(Template).order_by(col(Template.name)).offset(page.offset).limit(page.limit)))
            .scalars()
            .all()
        )
    return [TemplatePublic(**r.model_dump()) for r in rows], total
