"""Consortium tables and API shapes: participants, and the read model of member organisations."""

from __future__ import annotations

from pydantic import StrictBool, field_validator
from sqlmodel import Field

from distretto_shared.conventions import Id, StrictFloat, UtcDateTime
from projects.tables import Base, as_utc, new_id, project_fk, timestamp_field
from projects.vocabulary import ParticipantRole, ParticipantRoleIn


class ParticipantBase(Base):
    """A consortium member of a project."""

    name: str = Field(min_length=1, max_length=500)
    short_name: str | None = Field(default=None, max_length=100)
    cordis_organisation_id: str | None = Field(default=None, max_length=20, description="PIC / CORDIS organisationID")
    vat_number: str | None = Field(default=None, max_length=40)
    role: str = Field(default=ParticipantRole.PARTICIPANT.value, max_length=30)
    country: str | None = Field(
        default=None,
        max_length=2,
        schema_extra={"pattern": r"^[A-Za-z]{2}$"},
        description="ISO 3166 alpha-2 (EL for Greece, UK)",
    )
    organisation_type: str | None = Field(default=None, max_length=10, description="HES, REC, PRC, PUB, OTH")
    sme: StrictBool | None = None
    city: str | None = Field(default=None, max_length=200)
    ec_contribution: StrictFloat | None = Field(default=None, ge=0)
    net_ec_contribution: StrictFloat | None = Field(default=None, ge=0)
    total_cost: StrictFloat | None = Field(default=None, ge=0)


class Participant(ParticipantBase, table=True):
    """A participant row."""

    __tablename__ = "participant"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    project_id: str = project_fk()
    organisation_id: str | None = Field(default=None, max_length=64, index=True)
    """The member organisation this participant is (from the membership events)."""
    is_foundation: bool = False
    name_key: str = Field(default="", max_length=500, index=True)
    vat_key: str | None = Field(default=None, max_length=40, index=True)
    created_at: UtcDateTime = timestamp_field()
    updated_at: UtcDateTime = timestamp_field()


class _ParticipantChecks(Base):
    @field_validator("country", check_fields=False)
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().upper()
        if len(v) != 2 or not v.isalpha():
            raise ValueError("country must be a two-letter code such as IT")
        return v

    @field_validator("name", check_fields=False)
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be blank")
        return v.strip() if v is not None else v


class ParticipantCreate(_ParticipantChecks, ParticipantBase):
    """Input to add a participant."""

    role: ParticipantRoleIn = ParticipantRole.PARTICIPANT


class ParticipantUpdate(_ParticipantChecks):
    """Input to change a participant."""

    name: str | None = Field(default=None, min_length=1, max_length=500)
    short_name: str | None = Field(default=None, max_length=100)
    cordis_organisation_id: str | None = Field(default=None, max_length=20)
    vat_number: str | None = Field(default=None, max_length=40)
    role: ParticipantRoleIn | None = None
    country: str | None = Field(default=None, max_length=2, schema_extra={"pattern": r"^[A-Za-z]{2}$"})
    organisation_type: str | None = Field(default=None, max_length=10)
    sme: StrictBool | None = None
    city: str | None = Field(default=None, max_length=200)
    ec_contribution: StrictFloat | None = Field(default=None, ge=0)
    net_ec_contribution: StrictFloat | None = Field(default=None, ge=0)
    total_cost: StrictFloat | None = Field(default=None, ge=0)


class ParticipantPublic(ParticipantBase):
    """A participant as the API shows it."""

    id: Id
    project_id: Id
    organisation_id: Id | None
    """The member organisation this participant is: membership's id, dashed as membership gives it."""
    is_foundation: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime

    _tz = field_validator("created_at", "updated_at")(as_utc)


class MemberOrganisation(Base, table=True):
    """What this service keeps of the membership register (fed by membership events)."""

    __tablename__ = "member_organisation"

    organisation_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=500)
    name_key: str = Field(max_length=500, index=True)
    vat_number: str | None = Field(default=None, max_length=40)
    vat_key: str | None = Field(default=None, max_length=40, index=True)
    kind: str = Field(default="other", max_length=40)
    country: str = Field(default="IT", max_length=2)
    status: str = Field(default="applied", max_length=20)
    updated_at: UtcDateTime = timestamp_field()


class MemberOrganisationPublic(Base):
    """A member organisation as this service knows it."""

    organisation_id: Id
    name: str
    vat_number: str | None
    kind: str
    country: str
    status: str
