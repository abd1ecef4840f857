"""Pure rules of opportunities: their types, stages, validity.

No I/O and no framework here.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum


class OpportunityType(StrEnum):
    """The Enterprise Europe Network profile types, plus the EU-call partner search."""

    TECHNOLOGY_OFFER = "technology_offer"
    TECHNOLOGY_REQUEST = "technology_request"
    RD_REQUEST = "rd_request"
    BUSINESS_OFFER = "business_offer"
    BUSINESS_REQUEST = "business_request"
    PARTNER_SEARCH = "partner_search"


class OpportunityStatus(StrEnum):
    """An opportunity is published until it expires (renewal publishes it again) or its owner withdraws it."""

    ACTIVE = "active"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class DevelopmentStage(StrEnum):
    """How far the technology is (EEN's stages, simplified)."""

    CONCEPT = "concept"
    LAB_TESTED = "lab_tested"
    PROTOTYPE = "prototype"
    FIELD_TESTED = "field_tested"
    ON_THE_MARKET = "on_the_market"


class RoleSought(StrEnum):
    """The role a partner search looks for in the consortium."""

    COORDINATOR = "coordinator"
    PARTNER = "partner"


def is_expired(expires_on: date, today: date) -> bool:
    """An opportunity is valid up to and including its expiry day."""
    return expires_on < today


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months (clamped to the month's last day)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")
