"""Every table of the projects service, on its one ``Base`` (one MetaData): import this module to
have the whole MetaData (migrations, the drift test), or an aggregate's ``models`` for its own."""

from __future__ import annotations

from projects.consortium.models import MemberOrganisation, Participant
from projects.deadlines.models import DeliverableNotice
from projects.project.models import Project
from projects.tables import Base
from projects.workplan.models import Deliverable, Milestone, ReportingPeriod, WorkPackage

__all__ = [
    "Base",
    "Deliverable",
    "DeliverableNotice",
    "MemberOrganisation",
    "Milestone",
    "Participant",
    "Project",
    "ReportingPeriod",
    "WorkPackage",
]
