"""Tables and API shapes of the figures: an organisation's yearly figures, the district's aggregates."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator
from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field

from distretto_shared.conventions import StrictFloat, StrictInt, UtcDateTime
from membership.figures.domain import SizeClass, size_class_for
from membership.tables import STRICT_INPUT, UTC_DT, Base, new_id, utcnow


class YearlyFiguresBase(Base):
    """An organisation's figures for one year."""

    staff: int = Field(ge=0, le=10_000_000)
    rd_staff: int = Field(default=0, ge=0, le=10_000_000)
    turnover_eur: float = Field(default=0, ge=0, le=1e13)
    lab_m2: float = Field(default=0, ge=0, le=1e8)
    patents: int = Field(default=0, ge=0, le=1_000_000)


class YearlyFiguresCreate(YearlyFiguresBase):
    """Body of ``PUT /organisations/{id}/figures/{year}``: the year's whole record.

    PUT replaces, so every field is required (422 naming the missing ones): a body with only
    ``staff`` must not set the turnover, lab space and patents of that year to zero.
    """

    model_config = STRICT_INPUT  # type: ignore[assignment]

    staff: StrictInt = Field(ge=0, le=10_000_000)
    rd_staff: StrictInt = Field(ge=0, le=10_000_000)
    turnover_eur: StrictFloat = Field(ge=0, le=1e13)
    lab_m2: StrictFloat = Field(ge=0, le=1e8)
    patents: StrictInt = Field(ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _rd_within_staff(self) -> YearlyFiguresCreate:
        if self.rd_staff > self.staff:
            raise ValueError(f"R&D staff ({self.rd_staff}) cannot exceed staff ({self.staff})")
        return self


class YearlyFigures(YearlyFiguresBase, table=True):
    """Stored figures; one row per organisation and year."""

    __tablename__ = "yearly_figures"
    __table_args__ = (UniqueConstraint("organisation_id", "year", name="uq_yearly_figures_org_year"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36, index=True)
    year: int
    updated_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


class YearlyFiguresPublic(YearlyFiguresBase):
    """Figures as the API shows them, with the size class they imply."""

    year: int
    size_class: SizeClass | None = None


def figures_public(fig: YearlyFigures, kind: str) -> YearlyFiguresPublic:
    """A year's stored figures as the API shows them, with the size class they imply."""
    return YearlyFiguresPublic(
        year=fig.year,
        staff=fig.staff,
        rd_staff=fig.rd_staff,
        turnover_eur=fig.turnover_eur,
        lab_m2=fig.lab_m2,
        patents=fig.patents,
        size_class=size_class_for(kind, fig),
    )


class PublishedFigures(Base, table=True):
    """The last district figures published, so a new event goes out only when they change."""

    __tablename__ = "published_figures"

    key: str = Field(primary_key=True, max_length=20)
    payload: dict[str, Any] = Field(sa_type=JSON)
    published_at: UtcDateTime = Field(sa_type=UTC_DT)


class DistrictFiguresPublic(Base):
    """``GET /figures``: the district's live aggregates."""

    computed_at: UtcDateTime
    year: int | None = None
    members_total: int
    by_status: dict[str, int]
    by_kind: dict[str, int]
    by_sector: dict[str, int]
    by_size_class: dict[str, int]
    companies: int
    staff: int
    rd_staff: int
    turnover_eur: float
    lab_m2: float
    patents: int
