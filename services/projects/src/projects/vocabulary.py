"""The vocabularies of EU project tracking, shared by every aggregate of the service (no I/O).

Vocabulary columns are plain strings in the database (no database enum types: adding a value must
not need a migration); the API takes and answers these enums.
"""

from __future__ import annotations

from enum import StrEnum


class DomainRuleError(ValueError):
    """A rule of the domain was broken (the service turns it into a 409/422)."""


# -- vocabularies ------------------------------------------------------------


class ProjectStatus(StrEnum):
    """CORDIS statuses plus two for projects not (yet) on CORDIS."""

    PLANNED = "planned"
    ONGOING = "ongoing"
    SIGNED = "SIGNED"
    CLOSED = "CLOSED"
    TERMINATED = "TERMINATED"


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
    ASSOCIATED_PARTNER = "associatedPartner"
    THIRD_PARTY = "thirdParty"


class DeliverableType(StrEnum):
    """Horizon Europe deliverable types."""

    R = "R"
    DEM = "DEM"
    DEC = "DEC"
    DATA = "DATA"
    DMP = "DMP"
    ETHICS = "ETHICS"


class Dissemination(StrEnum):
    """Dissemination levels: public or sensitive."""

    PU = "PU"
    SEN = "SEN"


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
