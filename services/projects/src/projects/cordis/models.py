"""API shapes of a CORDIS import."""

from __future__ import annotations

from typing import Any

from sqlmodel import Field

from distretto_shared.conventions import Id
from projects.tables import Base


class CordisImportText(Base):
    """A CORDIS import given as text: the two CSV files' contents."""

    project_csv: str = Field(min_length=1, description="content of project.csv")
    organization_csv: str = Field(default="", description="content of organization.csv (may be empty)")


class CordisImportResult(Base):
    """What an import did."""

    projects_created: int = 0
    projects_updated: int = 0
    projects_unchanged: int = 0
    participants_created: int = 0
    participants_updated: int = 0
    participants_linked: int = 0
    project_ids: list[Id] = []
    warnings: list[dict[str, Any]] = []
    """Cells a spreadsheet would run as formulas (file, line, column, warning): imported as text."""
