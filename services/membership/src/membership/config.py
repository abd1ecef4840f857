"""Settings of the membership service (environment prefix ``MEMBERSHIP_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from distretto_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Membership settings; every field can be set as ``MEMBERSHIP_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MEMBERSHIP_", extra="ignore")

    http_port: int = 8001
    default_period_months: int = 12
    """Length of a membership period when the organisation has no fee plan."""
    default_grace_days: int = 30
    """Days after the renewal date before an unpaid membership lapses (no fee plan)."""
    lapse_check_interval: float = 3600.0
    """Seconds between two scans for overdue renewals."""
    figures_interval: float = 5.0
    """Seconds between two checks of the district figures (the debounce of DistrictFiguresChanged)."""
    import_max_bytes: int = 5_000_000
    """Largest CSV file accepted by the import."""
