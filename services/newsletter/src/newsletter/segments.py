# Over 500 lines: the segment aggregate in one module (rules, their compiled SQL, counting, routes);
# its move into a segments/ package (models, domain, repository, api) is open work of the service-shape issue.
"""Segments: saved, named rules over the audience attributes, lists and interests.

A rule is a tree of groups (``all`` / ``any`` / ``none`` of the rules below) and conditions
(``{"field": "sector", "any_of": [...]}``, or ``all_of`` / ``none_of``). It compiles to one SQL
query (SQLAlchemy Core, the same on SQLite and PostgreSQL) over each subscriber's audience row
(:class:`newsletter.audience.AudienceMember`, kept by triggers) and its organisation, with
``EXISTS`` sub-queries on the rest of the read model of :mod:`newsletter.audience`. A segment's members are
always subscribers who are not suppressed and have a confirmed subscription (recorded consent);
a campaign that targets segments sends to the subscribers confirmed on its lists who are in at
least one of them.

Why one file of some 600 lines: the rule language (pydantic models and their validation), its
compilation to SQL and the segment use cases change together — a new field touches all three —
and the compiler is only readable beside the grammar it compiles. The one-house reshaping of the
newsletter (a package per aggregate) splits it with the rest of the service.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Discriminator, Tag, field_validator, model_validator
from pydantic import Field as PField
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Column, Field, col, func, select

from distretto_shared.casing import snake_case
from distretto_shared.context import Context, staff_request_context
from distretto_shared.contracts import newsletter as contracts
from distretto_shared.conventions import Id, UtcDateTime, canonical_id, hex_id
from distretto_shared.db import CoreUnitOfWork
from distretto_shared.outbox import add_event
from distretto_shared.web import (
    Conflict,
    Invalid,
    NotFound,
    Page,
    PageParams,
    make_page,
)
from distretto_shared.web import Paging as PageDep
from newsletter.audience import (
    AudienceMember,
    AudienceOrganisation,
    AudienceParticipation,
    AudienceProject,
    AudienceTag,
)
from newsletter.campaigns.models import Campaign
from newsletter.config import Settings
from newsletter.lists.models import MailingList
from newsletter.members.models import MemberContact
from newsletter.subscribers.models import Subscriber, SubscriberInterest, Subscription
from newsletter.tables import Base, Strict, new_id, utcnow

# -- rules -------------------------------------------------------------------------------

KINDS = ("company", "university", "research_institute", "hospital", "health_authority", "foundation", "other")
STATUSES = ("applied", "active", "rejected", "suspended", "lapsed", "left")
SIZE_CLASSES = ("micro", "small", "medium", "large")
PROJECT_ROLES = ("coordinator", "participant", "associated_partner", "third_party")
FORMER_ROLE_SPELLINGS = {"associated_partner": "associatedPartner", "third_party": "thirdParty"}
"""How the projects service's events spelled these roles before its vocabularies were made one case:
rows kept from those events still carry them."""
CLOSED_VALUES: dict[str, tuple[str, ...]] = {"kind": KINDS, "status": STATUSES, "size_class": SIZE_CLASSES}

FieldName = Literal[
    "kind", "sector", "size_class", "province", "status", "role", "project", "keyword", "list", "interest"
]
MAX_DEPTH = 5
MAX_CONDITIONS = 50


class Condition(Strict):
    """One attribute against a set of values: exactly one of ``any_of``, ``all_of``, ``none_of``."""

    field: FieldName
    any_of: list[str] | None = PField(default=None, min_length=1, max_length=100)
    all_of: list[str] | None = PField(default=None, min_length=1, max_length=100)
    none_of: list[str] | None = PField(default=None, min_length=1, max_length=100)
    project_role: list[Literal["coordinator", "participant", "associated_partner", "third_party"]] | None = PField(
        default=None, min_length=1, max_length=4
    )
    """Only with ``field: project``: the organisation takes part in that role (the former spellings
    ``associatedPartner``, ``thirdParty`` are taken too, in any case)."""

    @field_validator("project_role", mode="before")
    @classmethod
    def _roles(cls, value: Any) -> Any:
        return [snake_case(v) if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _check(self) -> Condition:
        given = [name for name in ("any_of", "all_of", "none_of") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a condition needs exactly one of any_of, all_of, none_of")
        if self.project_role is not None and self.field != "project":
            raise ValueError("project_role goes only with field 'project'")
        values = self.values
        if any(not v.strip() or len(v) > 200 for v in values):
            raise ValueError("values are 1–200 characters each")
        allowed = CLOSED_VALUES.get(self.field)
        if allowed is not None:
            bad = [v for v in values if v.strip().lower() not in allowed]
            if bad:
                raise ValueError(f"unknown {self.field} {bad!r}; one of {list(allowed)}")
        return self

    @property
    def op(self) -> str:
        return next(name for name in ("any_of", "all_of", "none_of") if getattr(self, name) is not None)

    @property
    def values(self) -> list[str]:
        return list(getattr(self, self.op) or [])


class Group(Strict):
    """Exactly one of: ``all`` (every rule holds), ``any`` (one holds), ``none`` (no rule holds)."""

    all: list[Rule] | None = PField(default=None, min_length=1, max_length=50)
    any: list[Rule] | None = PField(default=None, min_length=1, max_length=50)
    none: list[Rule] | None = PField(default=None, min_length=1, max_length=50)

    @model_validator(mode="after")
    def _one(self) -> Group:
        if sum(x is not None for x in (self.all, self.any, self.none)) != 1:
            raise ValueError("a group needs exactly one of all, any, none")
        return self

    @property
    def op(self) -> str:
        return "all" if self.all is not None else "any" if self.any is not None else "none"

    @property
    def rules(self) -> list[Rule]:
        return list(self.all or self.any or self.none or [])


def _kind(value: Any) -> str:
    return (
        "condition"
        if isinstance(value, dict | Condition) and (not isinstance(value, dict) or "field" in value)
        else "group"
    )


Rule = Annotated[Annotated[Condition, Tag("condition")] | Annotated[Group, Tag("group")], Discriminator(_kind)]
Group.model_rebuild()


def check_rule(rule: Rule) -> None:
    """Depth and size limits (a rule is run against every subscriber: keep it bounded)."""
    count = 0

    def walk(node: Rule, depth: int, where: str) -> None:
        nonlocal count
        if depth > MAX_DEPTH:
            raise Invalid(f"rule nested deeper than {MAX_DEPTH} groups", details={"at": where})
        if isinstance(node, Condition):
            count += 1
            if count > MAX_CONDITIONS:
                raise Invalid(f"rule has more than {MAX_CONDITIONS} conditions", details={"at": where})
            return
        for i, child in enumerate(node.rules):
            walk(child, depth + 1, f"{where}.{node.op}[{i}]")

    walk(rule, 1, "rule")


# -- compiling -------------------------------------------------------------------------------

S = Subscriber.__table__  # type: ignore[attr-defined]
SS = Subscription.__table__  # type: ignore[attr-defined]
SI = SubscriberInterest.__table__  # type: ignore[attr-defined]
ML = MailingList.__table__  # type: ignore[attr-defined]
MC = MemberContact.__table__  # type: ignore[attr-defined]
AO = AudienceOrganisation.__table__  # type: ignore[attr-defined]
AT = AudienceTag.__table__  # type: ignore[attr-defined]
AP = AudienceProject.__table__  # type: ignore[attr-defined]
APJ = AudienceParticipation.__table__  # type: ignore[attr-defined]
AM = AudienceMember.__table__  # type: ignore[attr-defined]


INDEXES = [
    # Counting walks organisation → contacts → subscriber → confirmed subscription; these let each
    # step read an index only (see bench/newsletter/segments.py).
    sa.Index("ix_member_contact_org_contact", MC.c.organisation_id, MC.c.contact_id),
    sa.Index("ix_subscriber_contact_live", S.c.contact_id, S.c.suppressed, S.c.id),
    sa.Index(
        "ix_subscription_confirmed",
        SS.c.subscriber_id,
        postgresql_where=SS.c.status == "confirmed",
        sqlite_where=SS.c.status == "confirmed",
    ),
]
"""Declared on the tables' metadata: created with the tables on a new database, by 0004 on an old one."""


def _norm(field: str, value: str) -> str:
    value = " ".join(value.split())
    if field == "province":
        return value.upper()
    if field == "project":
        return hex_id(value)  # a project's id in either form names the 32-hex one projects' events carry
    return value.lower()


@dataclass(frozen=True)
class Scope:
    """The tables one compiled rule reads: a subscriber's audience row (its member contact,
    organisation and consent, :class:`newsletter.audience.AudienceMember`) and its organisation
    (outer-joined: a subscriber who is no member contact has none). Fresh aliases each time, so a
    compiled rule never correlates with an enclosing query's tables."""

    am: Any
    ao: Any

    @classmethod
    def new(cls) -> Scope:
        return cls(am=AM.alias("seg_member"), ao=AO.alias("seg_organisation"))

    @property
    def subscriber_id(self) -> Any:
        return self.am.c.subscriber_id

    def source(self) -> Any:
        return self.am.outerjoin(self.ao, self.ao.c.organisation_id == self.am.c.organisation_id)


def _has(scope: Scope, cond: Condition, values: list[str]) -> ColumnElement[bool]:
    """The subscriber has at least one of ``values`` for the condition's field (never NULL)."""
    field = cond.field
    if field in ("kind", "size_class", "province", "status"):
        column = scope.ao.c[field]
        return sa.and_(column.is_not(None), column.in_(values))
    if field == "role":
        mc = MC.alias()
        return sa.exists(
            sa.select(sa.literal(1))
            .select_from(mc)
            .where(mc.c.contact_id == scope.am.c.contact_id, mc.c.role.is_not(None), func.lower(mc.c.role).in_(values))
        )
    if field in ("sector", "keyword"):
        t = AT.alias()
        return sa.exists(
            sa.select(sa.literal(1))
            .select_from(t)
            .where(t.c.organisation_id == scope.am.c.organisation_id, t.c.facet == field, t.c.value.in_(values))
        )
    if field == "project":
        p, ap = APJ.alias(), AP.alias()
        by_acronym = sa.select(ap.c.project_id).where(func.lower(ap.c.acronym).in_([v.lower() for v in values]))
        where = [
            p.c.organisation_id == scope.am.c.organisation_id,
            sa.or_(p.c.project_id.in_(values), p.c.project_id.in_(by_acronym)),
        ]
        if cond.project_role:
            roles = list(cond.project_role)
            where.append(p.c.role.in_(roles + [FORMER_ROLE_SPELLINGS[r] for r in roles if r in FORMER_ROLE_SPELLINGS]))
        return sa.exists(sa.select(sa.literal(1)).select_from(p).where(*where))
    if field == "list":
        ss, ml = SS.alias(), ML.alias()
        return sa.exists(
            sa.select(sa.literal(1))
            .select_from(ss.join(ml, ml.c.id == ss.c.list_id))
            .where(ss.c.subscriber_id == scope.subscriber_id, ss.c.status == "confirmed", ml.c.slug.in_(values))
        )
    if field == "interest":
        si = SI.alias()
        return sa.exists(
            sa.select(sa.literal(1))
            .select_from(si)
            .where(si.c.subscriber_id == scope.subscriber_id, si.c.interest.in_(values))
        )
    raise AssertionError(field)  # pragma: no cover - FieldName is closed


MEMBER_FIELDS = frozenset({"kind", "sector", "size_class", "province", "status", "role", "project", "keyword"})


def compile_rule(rule: Rule, scope: Scope) -> ColumnElement[bool]:
    """The rule as one boolean SQL expression over ``scope`` (never NULL, so ``none`` negates cleanly).

    ``none_of`` on a register attribute holds for member contacts only (whose organisation has
    none of the values); on ``list`` and ``interest`` it holds for anyone without them.
    """
    if isinstance(rule, Condition):
        values = list(dict.fromkeys(_norm(rule.field, v) for v in rule.values))
        if rule.op == "any_of":
            return _has(scope, rule, values)
        if rule.op == "all_of":
            return sa.and_(*(_has(scope, rule, [v]) for v in values))
        without = sa.not_(_has(scope, rule, values))
        if rule.field in MEMBER_FIELDS:
            return sa.and_(scope.am.c.contact_id.is_not(None), without)
        return without
    parts = [compile_rule(child, scope) for child in rule.rules]
    if rule.op == "all":
        return sa.and_(*parts)
    if rule.op == "any":
        return sa.or_(*parts)
    return sa.not_(sa.or_(*parts))


def consenting(scope: Scope) -> ColumnElement[bool]:
    """Not suppressed and confirmed on at least one list: recorded consent (kept in the audience row)."""
    return scope.am.c.consenting == sa.true()  # type: ignore[no-any-return]


def members_query(rule: Rule) -> sa.Select[Any]:
    """``SELECT id`` of the segment's members (over its own aliases: usable inside any query)."""
    scope = Scope.new()
    return (
        sa.select(scope.subscriber_id).select_from(scope.source()).where(consenting(scope), compile_rule(rule, scope))
    )


def count_query(rule: Rule) -> sa.Select[Any]:
    """``SELECT count(*)`` of the segment's members."""
    scope = Scope.new()
    return sa.select(func.count()).select_from(scope.source()).where(consenting(scope), compile_rule(rule, scope))


# -- tables and shapes ---------------------------------------------------------------------------


class Segment(Base, table=True):
    """A saved, named rule."""

    __tablename__ = "segment"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200, unique=True)
    description: str = Field(default="", max_length=2000)
    rule: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    digest: bool = False
    """The cluster digest goes (also) to this segment, as its own campaign, its lines filtered to it."""
    digest_sections: list[str] = Field(
        default_factory=list, sa_column=Column(sa.JSON, nullable=False, server_default="[]")
    )
    """The digest sections this segment's digest keeps (empty: all of them)."""
    welcome: bool = False
    """Welcome mails go to new members' contacts in this segment (with none marked: to every one)."""
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    updated_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


TABLES = ["segment"]

DIGEST_SECTIONS = ("new_member", "milestone", "deadline", "project", "opportunity")
DigestSection = Literal["new_member", "milestone", "deadline", "project", "opportunity"]


class SegmentCreate(Strict):
    name: str = PField(min_length=1, max_length=200)
    description: str = PField(default="", max_length=2000)
    rule: Rule
    digest: bool = False
    """When any segment has it, the digest is sent per such segment, to its members only, with the
    lines that concern it (see :func:`keeps_line`)."""
    digest_sections: list[DigestSection] = PField(default_factory=list, max_length=len(DIGEST_SECTIONS))
    """Only these sections in this segment's digest (empty: all)."""
    welcome: bool = False
    """When any segment has it, welcome mails go only to contacts in such a segment."""


class SegmentUpdate(Strict):
    name: str | None = PField(default=None, min_length=1, max_length=200)
    description: str | None = PField(default=None, max_length=2000)
    rule: Rule | None = None
    digest: bool | None = None
    digest_sections: list[DigestSection] | None = PField(default=None, max_length=len(DIGEST_SECTIONS))
    welcome: bool | None = None


class SegmentPreview(Strict):
    rule: Rule


class SegmentPublic(BaseModel):
    id: Id
    name: str
    description: str
    rule: dict[str, Any]
    digest: bool
    digest_sections: list[str] = []
    welcome: bool = False
    created_at: UtcDateTime
    updated_at: UtcDateTime


class SegmentCount(BaseModel):
    count: int


class SegmentMember(BaseModel):
    subscriber_id: Id
    email: str
    name: str
    organisation_id: Id | None = None


def _dump(rule: Rule) -> dict[str, Any]:
    return rule.model_dump(exclude_none=True)  # type: ignore[union-attr]


def parse_rule(raw: dict[str, Any]) -> Rule:
    from pydantic import TypeAdapter

    return TypeAdapter(Rule).validate_python(raw)  # type: ignore[no-any-return]


async def _check_references(session: AsyncSession, rule: Rule) -> None:
    """Lists named in a rule must exist (a typo would silently select nobody)."""
    slugs: set[str] = set()

    def walk(node: Rule) -> None:
        if isinstance(node, Condition):
            if node.field == "list":
                slugs.update(_norm("list", v) for v in node.values)
            return
        for child in node.rules:
            walk(child)

    walk(rule)
    if slugs:
        known = set((await session.execute(sa.select(ML.c.slug).where(ML.c.slug.in_(sorted(slugs))))).scalars())
        missing = sorted(slugs - known)
        if missing:
            raise Invalid(f"no list {missing!r}", details={"lists": missing})


async def _validated(session: AsyncSession, rule: Rule) -> Rule:
    check_rule(rule)
    await _check_references(session, rule)
    return rule


def _public(s: Segment) -> SegmentPublic:
    return SegmentPublic(**s.model_dump())


_SEGMENT = Segment.__table__  # type: ignore[attr-defined]
_SEGMENT_BY_ID = sa.select(_SEGMENT.c.id).where(_SEGMENT.c.id == sa.bindparam("ref"))
_SEGMENT_BY_NAME = sa.select(_SEGMENT.c.id).where(_SEGMENT.c.name == sa.bindparam("ref"))


async def resolve_ids(uow: CoreUnitOfWork, refs: list[str]) -> list[str]:
    """:func:`resolve` in a Core unit of work (the same lookups, by id then by name, without ORM objects)."""
    out: list[str] = []
    for ref in refs:
        found = await uow.scalar(_SEGMENT_BY_ID, {"ref": hex_id(ref)})
        if found is None:
            found = await uow.scalar(_SEGMENT_BY_NAME, {"ref": ref})
        if found is None:
            raise Invalid(f"no segment {ref!r}", details={"segments": [ref]})
        if found not in out:
            out.append(found)
    return out


async def _load(session: AsyncSession, ref: str) -> Segment:
    seg = await session.get(Segment, hex_id(ref))  # an id in either form (docs/api-conventions.md, "Ids")
    if seg is None:
        seg = (await session.execute(select(Segment).where(Segment.name == ref))).scalar_one_or_none()
    if seg is None:
        raise NotFound(f"no segment {ref!r}")
    return seg


async def _name_free(session: AsyncSession, name: str, own_id: str | None = None) -> None:
    other = (await session.execute(select(Segment.id).where(Segment.name == name))).scalar_one_or_none()
    if other is not None and other != own_id:
        raise Conflict(f"a segment named {name!r} exists", details={"segment_id": canonical_id(other)})


def _automation(seg: Segment) -> dict[str, Any]:
    return {"digest": seg.digest, "digest_sections": list(seg.digest_sections or []), "welcome": seg.welcome}


def _changed_event(seg: Segment, *, deleted: bool = False) -> contracts.SegmentChanged:
    return contracts.SegmentChanged(
        segment_id=seg.id, name=seg.name, rule=seg.rule, deleted=deleted, **_automation(seg)
    )


def _sections(sections: list[DigestSection]) -> list[str]:
    """In the digest's order, each once."""
    return [s for s in DIGEST_SECTIONS if s in sections]


async def create_segment(ctx: Ctx, data: SegmentCreate) -> SegmentPublic:
    async with ctx.db.transaction() as session:
        await _validated(session, data.rule)
        await _name_free(session, data.name)
        seg = Segment(
            name=data.name,
            description=data.description,
            rule=_dump(data.rule),
            digest=data.digest,
            digest_sections=_sections(data.digest_sections),
            welcome=data.welcome,
        )
        session.add(seg)
        await session.flush()
        add_event(
            session,
            contracts.SegmentCreated(segment_id=seg.id, name=seg.name, rule=seg.rule, **_automation(seg)),
            source=ctx.source,
        )
        return _public(seg)


async def update_segment(ctx: Ctx, ref: str, data: SegmentUpdate) -> SegmentPublic:
    async with ctx.db.transaction() as session:
        seg = await _load(session, ref)
        if data.rule is not None:
            seg.rule = _dump(await _validated(session, data.rule))
        if data.name is not None:
            await _name_free(session, data.name, seg.id)
            seg.name = data.name
        if data.description is not None:
            seg.description = data.description
        if data.digest is not None:
            seg.digest = data.digest
        if data.digest_sections is not None:
            seg.digest_sections = _sections(data.digest_sections)
        if data.welcome is not None:
            seg.welcome = data.welcome
        seg.updated_at = utcnow()
        await session.flush()
        add_event(session, _changed_event(seg), source=ctx.source)
        return _public(seg)


async def delete_segment(ctx: Ctx, ref: str) -> None:
    async with ctx.db.transaction() as session:
        seg = await _load(session, ref)
        # A started campaign whose audience is still being frozen (chunk by chunk) selects with it too.
        campaigns = (
            await session.execute(
                select(Campaign.id, Campaign.segments, Campaign.status).where(
                    sa.or_(col(Campaign.status).in_(["draft", "scheduled"]), col(Campaign.freeze_after).is_not(None))
                )
            )
        ).all()
        using = [(cid, status) for cid, segs, status in campaigns if seg.id in (segs or [])]
        if using:
            waiting = any(status in ("draft", "scheduled") for _cid, status in using)
            raise Conflict(
                "campaigns not yet started target this segment"
                if waiting
                else "campaigns still selecting their audience target this segment",
                details={"campaigns": sorted(canonical_id(cid) for cid, _status in using)},
            )
        add_event(session, _changed_event(seg, deleted=True), source=ctx.source)
        await session.delete(seg)


async def get_segment(ctx: Ctx, ref: str) -> SegmentPublic:
    async with ctx.db.read() as session:
        return _public(await _load(session, ref))


async def list_segments(ctx: Ctx, page: PageParams) -> tuple[list[SegmentPublic], int]:
    async with ctx.db.read() as session:
        total = (await session.execute(select(func.count()).select_from(Segment))).scalar_one()
        rows = (
            (await session.execute(select(Segment).order_by(col(Segment.name)).offset(page.offset).limit(page.limit)))
            .scalars()
            .all()
        )
        return [_public(s) for s in rows], total


@functools.lru_cache(maxsize=256)
def _count_statement(rule_json: str) -> sa.Select[Any]:
    """A rule's count statement, built once per rule (building and compiling it costs a few ms of
    Python, more than the query itself; the values are bound parameters, the statement immutable)."""
    return count_query(parse_rule(json.loads(rule_json)))


async def count_in(session: AsyncSession, rule: Rule) -> int:
    statement = _count_statement(json.dumps(_dump(rule), sort_keys=True))
    return int((await session.execute(statement)).scalar_one())


async def sample_in(session: AsyncSession, rule: Rule, page: PageParams) -> tuple[list[SegmentMember], int]:
    total = await count_in(session, rule)
    scope = Scope.new()
    q = (
        sa.select(S.c.id, S.c.email, S.c.name, scope.am.c.organisation_id)
        .select_from(scope.source().join(S, S.c.id == scope.subscriber_id))
        .where(consenting(scope), compile_rule(rule, scope))
        .order_by(S.c.email, S.c.id)
        .offset(page.offset)
        .limit(page.limit)
    )
    rows = (await session.execute(q)).all()
    return [SegmentMember(subscriber_id=r[0], email=r[1], name=r[2], organisation_id=r[3]) for r in rows], total


async def count_segment(ctx: Ctx, ref: str) -> SegmentCount:
    async with ctx.db.read() as session:
        seg = await _load(session, ref)
        return SegmentCount(count=await count_in(session, parse_rule(seg.rule)))


async def sample_segment(ctx: Ctx, ref: str, page: PageParams) -> tuple[list[SegmentMember], int]:
    async with ctx.db.read() as session:
        seg = await _load(session, ref)
        return await sample_in(session, parse_rule(seg.rule), page)


async def preview(ctx: Ctx, rule: Rule, page: PageParams) -> tuple[list[SegmentMember], int]:
    async with ctx.db.read() as session:
        await _validated(session, rule)
        return await sample_in(session, rule, page)


# -- for campaigns and automations ----------------------------------------------------------------


async def resolve(session: AsyncSession, refs: list[str]) -> list[str]:
    """Segment ids for ids or names (422 for an unknown one)."""
    out: list[str] = []
    for ref in refs:
        try:
            seg = await _load(session, ref)
        except NotFound as exc:
            raise Invalid(f"no segment {ref!r}", details={"segments": [ref]}) from exc
        if seg.id not in out:
            out.append(seg.id)
    return out


async def audience_filter(session: AsyncSession, segment_ids: list[str]) -> ColumnElement[bool]:
    """In at least one of these segments (their rules as they are now: called when a campaign starts)."""
    rows = (await session.execute(select(Segment).where(col(Segment.id).in_(segment_ids)))).scalars().all()
    missing = sorted(canonical_id(i) for i in set(segment_ids) - {s.id for s in rows})
    if missing:
        raise Conflict(f"the campaign targets segments that no longer exist: {missing}", details={"segments": missing})
    return sa.or_(*(S.c.id.in_(members_query(parse_rule(s.rule))) for s in rows))


async def digest_segments(session: AsyncSession) -> list[Segment]:
    """The segments the digest goes to, one campaign each (none: the digest goes to the whole members list)."""
    return list(
        (await session.execute(select(Segment).where(col(Segment.digest).is_(True)).order_by(col(Segment.name))))
        .scalars()
        .all()
    )


def named_values(rule: Rule, field: str) -> set[str]:
    """The values a rule asks for on ``field`` (``any_of`` / ``all_of`` outside a ``none`` group), normalised."""
    found: set[str] = set()

    def walk(node: Rule, negated: bool) -> None:
        if isinstance(node, Condition):
            if node.field == field and node.op != "none_of" and not negated:
                found.update(_norm(field, v) for v in node.values)
            return
        for child in node.rules:
            walk(child, negated or node.op == "none")

    walk(rule, False)
    return found


def keeps_line(seg: Segment, kind: str, sectors: list[str]) -> bool:
    """Whether a digest line (of section ``kind``, about ``sectors``) goes into this segment's digest.

    The segment's ``digest_sections`` choose the sections (empty: all). A line about sectors (a new
    member, an opportunity) goes only to segments whose rule asks for one of those sectors, or
    that ask for no sector at all; a line about no sector (a milestone, a deadline) goes to all.
    """
    if seg.digest_sections and kind not in seg.digest_sections:
        return False
    wanted = named_values(parse_rule(seg.rule), "sector")
    line = {_norm("sector", s) for s in sectors}
    return not wanted or not line or bool(wanted & line)


async def in_welcome_segment(session: AsyncSession, subscriber_id: str) -> bool:
    """Whether a welcome mail may go to this subscriber: in a segment marked ``welcome``, or none is marked."""
    marked = (await session.execute(select(Segment).where(col(Segment.welcome).is_(True)))).scalars().all()
    if not marked:
        return True
    await session.flush()
    for seg in marked:
        scope = Scope.new()
        q = (
            sa.select(scope.subscriber_id)
            .select_from(scope.source())
            .where(scope.subscriber_id == subscriber_id, consenting(scope), compile_rule(parse_rule(seg.rule), scope))
        )
        if (await session.execute(q)).first() is not None:
            return True
    return False


# -- HTTP --------------------------------------------------------------------------------------


Ctx = Annotated[Context[Settings], Depends(staff_request_context)]
"""Segments read the whole audience: staff and admin only (401 anonymous, 403 everyone else)."""
router = APIRouter(tags=["segments"])
Ref = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The segment's id (either form) or name",
    ),
]


@router.post("/segments", status_code=201, response_model=SegmentPublic)
async def create(data: SegmentCreate, ctx: Ctx) -> SegmentPublic:
    """Save a named rule (422 with the reason for a bad one; 409 for a name in use)."""
    return await create_segment(ctx, data)


@router.get("/segments", response_model=Page[SegmentPublic])
async def list_(ctx: Ctx, page: PageDep) -> Page[SegmentPublic]:
    items, total = await list_segments(ctx, page)
    return make_page(items, total, page)


@router.post("/segments/preview", response_model=Page[SegmentMember])
async def preview_(data: SegmentPreview, ctx: Ctx, page: PageDep) -> Page[SegmentMember]:
    """An unsaved rule's members (``total`` is the count)."""
    items, total = await preview(ctx, data.rule, page)
    return make_page(items, total, page)


@router.get("/segments/{segment}", response_model=SegmentPublic)
async def get(segment: Ref, ctx: Ctx) -> SegmentPublic:
    return await get_segment(ctx, segment)


@router.patch("/segments/{segment}", response_model=SegmentPublic)
async def update(segment: Ref, data: SegmentUpdate, ctx: Ctx) -> SegmentPublic:
    return await update_segment(ctx, segment, data)


@router.delete("/segments/{segment}", status_code=204)
async def delete(segment: Ref, ctx: Ctx) -> None:
    """409 while a draft or scheduled campaign targets it."""
    await delete_segment(ctx, segment)


@router.get("/segments/{segment}/count", response_model=SegmentCount)
async def count(segment: Ref, ctx: Ctx) -> SegmentCount:
    """How many subscribers the segment holds now (consenting, not suppressed)."""
    return await count_segment(ctx, segment)


@router.get("/segments/{segment}/sample", response_model=Page[SegmentMember])
async def sample(segment: Ref, ctx: Ctx, page: PageDep) -> Page[SegmentMember]:
    """The segment's members now, a page at a time, by address."""
    items, total = await sample_segment(ctx, segment, page)
    return make_page(items, total, page)
