"""Every table of the newsletter service, on its one ``Base`` (one MetaData for the service).

The tables live with their aggregate (``newsletter/<aggregate>/models.py``; the audience read model
in :mod:`newsletter.audience`, segments in :mod:`newsletter.segments`); importing this module
registers the aggregates' tables, which is what the migrations (``migrations/env.py``) and the
drift test need.
"""

from __future__ import annotations

from newsletter.bounces.models import Bounce, Suppression, WebhookReceipt
from newsletter.campaigns.models import Campaign
from newsletter.consent.models import ConsentRecord, RateHit
from newsletter.delivery.models import Delivery
from newsletter.digest.models import DigestItem
from newsletter.lists.models import MailingList
from newsletter.members.models import MemberContact, MemberOrganisation
from newsletter.subscribers.models import Subscriber, SubscriberInterest, Subscription
from newsletter.tables import Base
from newsletter.templates.models import Template

__all__ = [
    "Base",
    "Bounce",
    "Campaign",
    "ConsentRecord",
    "Delivery",
    "DigestItem",
    "MailingList",
    "MemberContact",
    "MemberOrganisation",
    "RateHit",
    "Subscriber",
    "SubscriberInterest",
    "Subscription",
    "Suppression",
    "Template",
    "WebhookReceipt",
]
