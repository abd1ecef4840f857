"""Every table of the membership service, on its one ``Base`` (one MetaData for the service).

The tables live with their aggregate (``membership/<aggregate>/models.py``); importing this module
registers them all, which is what the migrations (``migrations/env.py``) and the drift test need.
"""

from __future__ import annotations

from membership.contacts.models import Contact
from membership.figures.models import PublishedFigures, YearlyFigures
from membership.lifecycle.models import FeePlan, Renewal, StatusChange
from membership.organisations.models import Organisation
from membership.tables import Base

__all__ = [
    "Base",
    "Contact",
    "FeePlan",
    "Organisation",
    "PublishedFigures",
    "Renewal",
    "StatusChange",
    "YearlyFigures",
]
