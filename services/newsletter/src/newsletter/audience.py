"""Audience attributes kept in step by other services' events (what segments select on).

Nothing here is personal data: an organisation's kind, sectors, size class, province and
membership status (membership's organisation events), the EU projects it takes part in and its
role in each (projects' events), and its competence keywords (membership's profile and the
keywords of the matchmaking opportunities it published). A subscriber reaches these through
``subscriber.contact_id`` → ``member_contact.organisation_id``; the contact's role is fetched
from membership with the name and address (``member_contact.role``).

The handlers run in their own consumer group (``newsletter.newsletter-audience``), so a new
installation builds the read model from the beginning of the register's topics.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Column, Field

from distretto_shared.consumer import Consumers
from distretto_shared.context import Context
from distretto_shared.contracts import matchmaking, membership, projects
from distretto_shared.conventions import UtcDateTime
from distretto_shared.db import preload
from distretto_shared.events import EventMeta
from newsletter.config import Settings
from newsletter.tables import Base, utcnow

Ctx = Context[Settings]

# -- tables ----------------------------------------------------------------------------


class AudienceOrganisation(Base, table=True):
    """An organisation's segmentable attributes (the latest profile and status seen)."""

    __tablename__ = "audience_organisation"
    organisation_id: str = Field(primary_key=True, max_length=64)
    kind: str | None = Field(default=None, max_length=40, index=True)
    size_class: str | None = Field(default=None, max_length=20, index=True)
    province: str | None = Field(default=None, max_length=50, index=True)
    status: str | None = Field(default=None, max_length=20, index=True)
    updated_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class AudienceTag(Base, table=True):
    """One value of a many-valued attribute of an organisation: a sector or a competence keyword.

    ``source`` says which event keeps it: ``membership`` (the profile: replaced at each profile
    event) or ``opportunity:<id>`` (an opportunity's keywords: gone when it expires).
    """

    __tablename__ = "audience_tag"
    facet: str = Field(primary_key=True, max_length=20)
    value: str = Field(primary_key=True, max_length=200)
    organisation_id: str = Field(primary_key=True, max_length=64, index=True)
    source: str = Field(primary_key=True, max_length=80)


class AudienceProject(Base, table=True):
    """An EU project as far as segments need it (its acronym, to name it in a rule)."""

    __tablename__ = "audience_project"
    project_id: str = Field(primary_key=True, max_length=64)
    acronym: str = Field(default="", max_length=100, index=True)
    status: str = Field(default="", max_length=40)


class AudienceParticipation(Base, table=True):
    """A participant of a project's consortium, with its role and (once linked) its organisation."""

    __tablename__ = "audience_participation"
    project_id: str = Field(primary_key=True, max_length=64)
    participant_id: str = Field(primary_key=True, max_length=64)
    organisation_id: str | None = Field(default=None, max_length=64, index=True)
    role: str = Field(default="participant", max_length=40)


TABLES = ["audience_organisation", "audience_tag", "audience_project", "audience_participation"]


class AudienceMember(Base, table=True):
    """One row per subscriber, kept by database triggers: its member contact, organisation and consent.

    What a segment counts over: one narrow table instead of subscriber ⋈ member contact ⋈ confirmed
    subscription for every subscriber (bench/newsletter/segments.py). ``consenting``: not suppressed
    and confirmed on at least one list. The triggers on ``subscriber``, ``subscription`` and
    ``member_contact`` (:func:`install_member_rows`) rewrite a subscriber's row in the same
    transaction as any change to those tables, whoever makes it (ORM, Core, bulk statements).
    Ids only: no personal data.
    """

    __tablename__ = "audience_member"
    __table_args__ = (
        sa.Index(
            "ix_audience_member_organisation_consenting",
            "organisation_id",
            postgresql_where=sa.text("consenting"),
            sqlite_where=sa.text("consenting"),
        ),
    )
    subscriber_id: str = Field(primary_key=True, max_length=32)
    contact_id: str | None = Field(default=None, max_length=64)
    organisation_id: str | None = Field(default=None, max_length=64)
    consenting: bool = False


MEMBER_TABLES = ["audience_member"]

_UPSERT = """INSERT INTO audience_member (subscriber_id, contact_id, organisation_id, consenting)
SELECT s.id, mc.contact_id, mc.organisation_id,
       (NOT s.suppressed AND EXISTS (SELECT 1 FROM subscription ss
                                     WHERE ss.subscriber_id = s.id AND ss.status = 'confirmed'))
FROM subscriber s LEFT JOIN member_contact mc ON mc.contact_id = s.contact_id
WHERE {where}
ON CONFLICT (subscriber_id) DO UPDATE SET contact_id = excluded.contact_id,
    organisation_id = excluded.organisation_id, consenting = excluded.consenting"""

# SQLite runs one writer at a time: a trigger sees every committed change.
_SQLITE_TRIGGERS = {
    "audience_member_subscriber_ins": ("AFTER INSERT ON subscriber", [_UPSERT.format(where="s.id = NEW.id")]),
    "audience_member_subscriber_upd": (
        "AFTER UPDATE ON subscriber",
        ["DELETE FROM audience_member WHERE subscriber_id = OLD.id", _UPSERT.format(where="s.id = NEW.id")],
    ),
    "audience_member_subscriber_del": (
        "AFTER DELETE ON subscriber",
        ["DELETE FROM audience_member WHERE subscriber_id = OLD.id"],
    ),
    "audience_member_subscription_ins": (
        "AFTER INSERT ON subscription",
        [_UPSERT.format(where="s.id = NEW.subscriber_id")],
    ),
    "audience_member_subscription_upd": (
        "AFTER UPDATE ON subscription",
        [_UPSERT.format(where="s.id IN (OLD.subscriber_id, NEW.subscriber_id)")],
    ),
    "audience_member_subscription_del": (
        "AFTER DELETE ON subscription",
        [_UPSERT.format(where="s.id = OLD.subscriber_id")],
    ),
    "audience_member_contact_ins": (
        "AFTER INSERT ON member_contact",
        [_UPSERT.format(where="s.contact_id = NEW.contact_id")],
    ),
    "audience_member_contact_upd": (
        "AFTER UPDATE ON member_contact",
        [_UPSERT.format(where="s.contact_id IN (OLD.contact_id, NEW.contact_id)")],
    ),
    "audience_member_contact_del": (
        "AFTER DELETE ON member_contact",
        [_UPSERT.format(where="s.contact_id = OLD.contact_id")],
    ),
}

# PostgreSQL: the refresh first locks the subscriber rows (FOR NO KEY UPDATE, as an UPDATE of them
# would), so two transactions changing the same subscriber's rows refresh one after the other, the
# second seeing the first's commit (READ COMMITTED: each statement of the function takes a new snapshot).
_PG_REFRESH = (
    """CREATE OR REPLACE FUNCTION audience_member_refresh(sids text[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF sids IS NULL OR cardinality(sids) = 0 THEN RETURN; END IF;
    PERFORM 1 FROM subscriber WHERE id = ANY(sids) ORDER BY id FOR NO KEY UPDATE;
    DELETE FROM audience_member am WHERE am.subscriber_id = ANY(sids)
        AND NOT EXISTS (SELECT 1 FROM subscriber s WHERE s.id = am.subscriber_id);
    """
    + _UPSERT.format(where="s.id = ANY(sids)")
    + """;
END $$"""
)
_PG_TRIGGERS = {
    "subscriber": """
    IF TG_OP <> 'INSERT' AND (TG_OP = 'DELETE' OR OLD.id <> NEW.id) THEN
        DELETE FROM audience_member WHERE subscriber_id = OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN PERFORM audience_member_refresh(ARRAY[NEW.id]::text[]); END IF;""",
    "subscription": """
    IF TG_OP <> 'INSERT' THEN PERFORM audience_member_refresh(ARRAY[OLD.subscriber_id]::text[]); END IF;
    IF TG_OP <> 'DELETE' THEN PERFORM audience_member_refresh(ARRAY[NEW.subscriber_id]::text[]); END IF;""",
    "member_contact": """
    IF TG_OP <> 'INSERT' THEN
        PERFORM audience_member_refresh(ARRAY(SELECT id FROM subscriber WHERE contact_id = OLD.contact_id)::text[]);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM audience_member_refresh(ARRAY(SELECT id FROM subscriber WHERE contact_id = NEW.contact_id)::text[]);
    END IF;""",
}


def install_member_rows(conn: sa.Connection) -> None:
    """Create (or re-create) the triggers that keep ``audience_member``, then fill it from what is there.

    Idempotent: run by migration 0007 and by the segment benchmark after loading its tables.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_PG_REFRESH)
        for table, body in _PG_TRIGGERS.items():
            name = f"audience_member_on_{table}"
            conn.exec_driver_sql(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN{body}\n"
                "    RETURN NULL;\nEND $$"
            )
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            conn.exec_driver_sql(
                f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()"
            )
    else:
        for name, (when, statements) in _SQLITE_TRIGGERS.items():
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
            body = "".join(f"    {statement};\n" for statement in statements)
            conn.exec_driver_sql(f"CREATE TRIGGER {name} {when} FOR EACH ROW BEGIN\n{body}END")
    conn.exec_driver_sql("DELETE FROM audience_member WHERE subscriber_id NOT IN (SELECT id FROM subscriber)")
    conn.exec_driver_sql(_UPSERT.format(where="TRUE"))


def remove_member_rows(conn: sa.Connection) -> None:
    """Drop the triggers (before the table goes)."""
    if conn.dialect.name == "postgresql":
        for table in _PG_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS audience_member_on_{table} ON {table}")
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS audience_member_on_{table}()")
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS audience_member_refresh(text[])")
    else:
        for name in _SQLITE_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")


PROFILE_SOURCE = "membership"


def _norm(values: list[str] | tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        v = " ".join(str(v).split()).lower()[:200]
        if v and v not in out:
            out.append(v)
    return out


# -- use cases ---------------------------------------------------------------------------


async def _organisation(session: AsyncSession, organisation_id: str) -> AudienceOrganisation:
    org = await session.get(AudienceOrganisation, organisation_id)
    if org is None:
        org = AudienceOrganisation(organisation_id=organisation_id)
        session.add(org)
    return org


async def _replace_tags(session: AsyncSession, organisation_id: str, source: str, tags: dict[str, list[str]]) -> None:
    T = AudienceTag.__table__  # type: ignore[attr-defined]
    await session.execute(sa.delete(T).where(T.c.organisation_id == organisation_id, T.c.source == source))
    rows = [
        {"facet": facet, "value": value, "organisation_id": organisation_id, "source": source}
        for facet, values in tags.items()
        for value in _norm(values)
    ]
    if rows:
        await session.execute(sa.insert(T), rows)


async def profile_seen(
    session: AsyncSession, profile: membership.OrganisationProfile, *, status: str | None = None
) -> None:
    """OrganisationRegistered / Updated / Joined: the whole profile replaces what was kept."""
    org = await _organisation(session, profile.organisation_id)
    org.kind = profile.kind
    org.size_class = profile.size_class
    org.province = (profile.province or "").strip().upper()[:50] or None
    org.status = status or profile.status
    org.updated_at = utcnow()
    await session.flush()
    await _replace_tags(
        session,
        profile.organisation_id,
        PROFILE_SOURCE,
        {"sector": profile.sectors, "keyword": [*profile.competences, *profile.keywords]},
    )


async def status_changed(session: AsyncSession, organisation_id: str, status: str) -> None:
    """Suspended / lapsed / left / rejected: the events carry no profile, only the new status."""
    org = await _organisation(session, organisation_id)
    org.status = status
    org.updated_at = utcnow()


async def project_seen(session: AsyncSession, project: projects.ProjectSummary) -> None:
    row = await session.get(AudienceProject, project.project_id)
    if row is None:
        row = AudienceProject(project_id=project.project_id)
        session.add(row)
    row.acronym = project.acronym[:100]
    row.status = project.status[:40]


async def participant_seen(
    session: AsyncSession, project_id: str, participant_id: str, *, organisation_id: str | None, role: str | None
) -> None:
    row = await session.get(AudienceParticipation, (project_id, participant_id))
    if row is None:
        row = AudienceParticipation(project_id=project_id, participant_id=participant_id)
        session.add(row)
    if organisation_id:
        row.organisation_id = organisation_id
    if role:
        row.role = role[:40]


async def opportunity_published(session: AsyncSession, event: matchmaking.OpportunityPublished) -> None:
    if event.owner_organisation_id:
        await _replace_tags(
            session, event.owner_organisation_id, f"opportunity:{event.opportunity_id}", {"keyword": event.keywords}
        )


async def opportunity_expired(session: AsyncSession, opportunity_id: str) -> None:
    T = AudienceTag.__table__  # type: ignore[attr-defined]
    await session.execute(sa.delete(T).where(T.c.source == f"opportunity:{opportunity_id}"))


# -- handlers ------------------------------------------------------------------------------

consumers = Consumers("newsletter-audience")


@consumers.handles_batch(membership.OrganisationRegistered, membership.OrganisationUpdated)
async def on_profiles(ctx: Ctx, session: AsyncSession, batch: list[tuple[Any, EventMeta]]) -> None:
    """Each event carries the whole profile and ``profile_seen`` overwrites what was kept: of several
    events for one organisation in a batch only the last is applied (the same end state)."""
    latest: dict[str, membership.OrganisationProfile] = {}
    for event, _meta in batch:
        latest.pop(event.profile.organisation_id, None)  # keep the order of the last events
        latest[event.profile.organisation_id] = event.profile
    await preload(session, AudienceOrganisation, latest)
    for profile in latest.values():
        await profile_seen(session, profile)


# OrganisationJoined is handled in this group by newsletter.consumers.on_joined: the profile here,
# then the welcome mail and the digest line (the welcome's segments must see the joined profile).


@consumers.handles_batch(*membership.STATUS_EVENTS)
async def on_status(ctx: Ctx, session: AsyncSession, batch: list[tuple[membership.StatusEvent, EventMeta]]) -> None:
    await preload(session, AudienceOrganisation, [event.organisation_id for event, _ in batch])
    for event, _meta in batch:
        await status_changed(session, event.organisation_id, event.new_status)


@consumers.handles(projects.ProjectRegistered, projects.ProjectUpdated)
async def on_project(ctx: Ctx, session: AsyncSession, event: Any, meta: EventMeta) -> None:
    await project_seen(session, event.project)


@consumers.handles(projects.ParticipantAdded)
async def on_participant(ctx: Ctx, session: AsyncSession, event: projects.ParticipantAdded, meta: EventMeta) -> None:
    await participant_seen(
        session, event.project_id, event.participant_id, organisation_id=event.organisation_id, role=event.role
    )


@consumers.handles(projects.ParticipantLinked)
async def on_linked(ctx: Ctx, session: AsyncSession, event: projects.ParticipantLinked, meta: EventMeta) -> None:
    await participant_seen(
        session, event.project_id, event.participant_id, organisation_id=event.organisation_id, role=None
    )


@consumers.handles(matchmaking.OpportunityPublished)
async def on_opportunity(
    ctx: Ctx, session: AsyncSession, event: matchmaking.OpportunityPublished, meta: EventMeta
) -> None:
    await opportunity_published(session, event)


@consumers.handles(matchmaking.OpportunityExpired, matchmaking.OpportunityWithdrawn)
async def on_expired(
    ctx: Ctx,
    session: AsyncSession,
    event: matchmaking.OpportunityExpired | matchmaking.OpportunityWithdrawn,
    meta: EventMeta,
) -> None:
    await opportunity_expired(session, event.opportunity_id)
