"""Settings of the projects service (env prefix ``PROJECTS_``)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic_settings import SettingsConfigDict

from distretto_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Projects service settings."""

    model_config = SettingsConfigDict(env_prefix="PROJECTS_", extra="ignore")

    http_port: int = 8002
    due_soon_horizons: list[int] = [30, 7]
    """Days before a deliverable's due date at which a DeliverableDueSoon is emitted (JSON list in env)."""
    deadline_scan_interval: float = 300.0
    """Seconds between two deadline scans."""
    deadline_scan_enabled: bool = True
    today: date | None = None
    """Clock override for the deadline engine (tests, demos); empty means today's UTC date."""
    foundation_names: list[str] = ["Fondazione Toscana Life Sciences", "Toscana Life Sciences"]
    """Names under which the foundation itself appears in consortia (matched normalised)."""
    foundation_vat_numbers: list[str] = []

    def current_date(self) -> date:
        """Today for the deadline engine: the override when set, else the UTC date."""
        return self.today or datetime.now(UTC).date()
