"""Events published by the EU projects service."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from distretto_shared.casing import snake_case
from distretto_shared.events import Event
from distretto_shared.topics import TopicSpec, register

PROJECT_TOPIC = TopicSpec("projects.project.v1", partitions=3, retention_ms=-1)
register(PROJECT_TOPIC)

Vocabulary = Annotated[str, BeforeValidator(lambda v: snake_case(v) if isinstance(v, str) else v)]
"""A value of the projects' vocabularies (status, participant role) in lower snake case. Events
published before the vocabularies were made one case carry CORDIS's spellings (``SIGNED``,
``associatedPartner``): every consumer reads them as the current ones (``signed``,
``associated_partner``)."""


class ProjectSummary(BaseModel):
    """What other services keep of a project."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    project_id: str
    acronym: str
    title: str
    status: Vocabulary
    """signed, closed, terminated (CORDIS) or planned/ongoing for projects not yet on CORDIS"""
    framework_programme: str | None = None
    funding_scheme: str | None = None
    topics: list[str] = []
    objective: str = ""
    keywords: list[str] = []
    start_date: date | None = None
    end_date: date | None = None
    foundation_role: str = "none"
    thematic_areas: list[str] = []
    member_organisation_ids: list[str] = []
    """Member organisations taking part (linked participants)."""


class _ProjectEvent(Event):
    topic = PROJECT_TOPIC.name
    subject_field = "project_id"

    project_id: str


class ProjectRegistered(_ProjectEvent):
    """A project was added (by hand or by a CORDIS import)."""

    event_type = "distretto.projects.project.registered.v1"
    project: ProjectSummary


class ProjectUpdated(_ProjectEvent):
    """A project's data changed; carries the whole new summary."""

    event_type = "distretto.projects.project.updated.v1"
    project: ProjectSummary


class ProjectStatusChanged(_ProjectEvent):
    """A project's status changed."""

    event_type = "distretto.projects.project.status_changed.v1"
    old_status: Vocabulary
    new_status: Vocabulary


class ParticipantAdded(_ProjectEvent):
    """A participant joined a project's consortium."""

    event_type = "distretto.projects.participant.added.v1"
    participant_id: str
    name: str
    role: Vocabulary
    """coordinator, participant, associated_partner, third_party"""
    country: str | None = None
    organisation_id: str | None = None
    """The member organisation, when the participant is linked to one."""
    ec_contribution: float | None = None


class ParticipantLinked(_ProjectEvent):
    """A participant was recognised as a member organisation."""

    event_type = "distretto.projects.participant.linked.v1"
    participant_id: str
    organisation_id: str


class _DeliverableEvent(_ProjectEvent):
    deliverable_id: str
    number: str
    title: str
    due_date: date
    acronym: str = ""


class DeliverableSubmitted(_DeliverableEvent):
    """A deliverable was submitted."""

    event_type = "distretto.projects.deliverable.submitted.v1"
    submitted_on: date


class DeliverableDueSoon(_DeliverableEvent):
    """A deliverable is due within ``horizon_days`` (emitted once per deliverable and horizon)."""

    event_type = "distretto.projects.deliverable.due_soon.v1"
    horizon_days: int
    days_left: int


class DeliverableOverdue(_DeliverableEvent):
    """A deliverable passed its due date unsubmitted (emitted once per deliverable)."""

    event_type = "distretto.projects.deliverable.overdue.v1"
    days_late: int


class MilestoneReached(_ProjectEvent):
    """A milestone was reached."""

    event_type = "distretto.projects.milestone.reached.v1"
    milestone_id: str
    number: str
    title: str
    reached_on: date
    acronym: str = ""
