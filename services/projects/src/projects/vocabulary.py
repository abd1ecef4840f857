"""The vocabularies of EU project tracking, shared by every aggregate of the service (no I/O).

Vocabulary columns are plain strings in the database (no database enum types: adding a value must
not need a migration); the API takes and answers these enums, in lower snake case. CORDIS's own
spellings (``SIGNED``, ``associatedPartner``, ``PU``) are taken on input, in any case (the ``…In``
types), and stored rows were rewritten by revision 0002.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator

from distretto_shared.conventions import lower_enum


class DomainRuleError(ValueError):
    """A rule of the domain was broken (the service turns it into a 409/422)."""


# -- vocabularies ------------------------------------------------------------


class ProjectStatus(StrEnum):
    """CORDIS statuses plus two for projects not (yet) on CORDIS."""

    PLANNED = "planned"
    ONGOING = "ongoing"
    SIGNED = "signed"
    CLOSED = "closed"
    TERMINATED = "terminated"


class FoundationRole(StrEnum):
    """The foundation's own part in a project."""

    COORDINATOR = "coordinator"
    PARTNER = "partner"
    THIRD_PARTY = "third_party"
    SUPPORTER = "supporter"
    NONE = "none"


class ParticipantRole(StrEnum):
    """CORDIS participant roles."""

    COORDINATOR = "coordinator"
    PARTICIPANT = "participant"
    ASSOCIATED_PARTNER = "associated_partner"
    THIRD_PARTY = "third_party"


class DeliverableType(StrEnum):
    """Horizon Europe deliverable types."""

    R = "r"
    DEM = "dem"
    DEC = "dec"
    DATA = "data"
    DMP = "dmp"
    ETHICS = "ethics"


class Dissemination(StrEnum):
    """Dissemination levels: public or sensitive."""

    PU = "pu"
    SEN = "sen"


class DeliverableStatus(StrEnum):
    """planned → submitted → accepted; planned → late (deadline engine) → submitted."""

    PLANNED = "planned"
    LATE = "late"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"


class MilestoneStatus(StrEnum):
    """A milestone is planned until reached."""

    PLANNED = "planned"
    REACHED = "reached"


THEMATIC_AREAS = (
    "personalised_medicine",
    "oncology",
    "rare_diseases",
    "neurology",
    "maternal_child_health",
    "medical_devices",
    "diagnostics",
    "advanced_therapies",
    "digital_health",
    "infectious_diseases",
    "nutraceutics",
    "other",
)


ProjectStatusIn = Annotated[ProjectStatus, BeforeValidator(lower_enum(ProjectStatus))]
ParticipantRoleIn = Annotated[ParticipantRole, BeforeValidator(lower_enum(ParticipantRole))]
DeliverableTypeIn = Annotated[DeliverableType, BeforeValidator(lower_enum(DeliverableType))]
DisseminationIn = Annotated[Dissemination, BeforeValidator(lower_enum(Dissemination))]
"""Input of a vocabulary: the lower snake case value or CORDIS's spelling, in any case."""
