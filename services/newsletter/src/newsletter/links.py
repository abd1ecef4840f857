"""Signed unsubscribe and preference links of a subscriber, and the list headers every campaign mail carries."""

from __future__ import annotations

import re
from urllib.parse import quote

from newsletter import domain
from newsletter.campaigns.models import Campaign
from newsletter.config import Settings


def links_for(settings: Settings, subscriber_id: str, campaign_id: str | None = None) -> dict[str, str]:
    """Signed unsubscribe and preference links of a subscriber (they do not expire)."""
    base = settings.link_base_url.rstrip("/")
    unsub = domain.sign_token(settings.secret_key, "unsubscribe", subscriber_id, extra=campaign_id or "")
    prefs = domain.sign_token(settings.secret_key, "preferences", subscriber_id)
    return {
        "unsubscribe_token": unsub,
        "unsubscribe_url": f"{base}/unsubscribe/{unsub}",
        "preferences_url": f"{base}/preferences?token={prefs}",
    }


_URL_SAFE = re.compile(r"[A-Za-z0-9_.\-]*")


def list_unsubscribe(settings: Settings, links: dict[str, str]) -> str:
    """The ``List-Unsubscribe`` value: the one-click https link and a mailto (RFC 2369)."""
    token = links["unsubscribe_token"]
    # signed tokens are URL-safe base64 and dots: nothing to quote (quote() is a tenth of a mail's cost)
    subject = "unsubscribe%20" + token if _URL_SAFE.fullmatch(token) else quote("unsubscribe " + token)
    mailto = f"mailto:{settings.unsubscribe_mailto}?subject={subject}"
    return f"<{links['unsubscribe_url']}>, <{mailto}>"


def list_headers(settings: Settings, links: dict[str, str], campaign: Campaign) -> list[tuple[str, str]]:
    """RFC 2369 / RFC 8058 headers every campaign mail carries."""
    return [
        ("List-Unsubscribe", list_unsubscribe(settings, links)),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("List-Id", f"<newsletter.{settings.mail_domain}>"),
        ("Feedback-ID", f"{campaign.id}:newsletter:{settings.mail_domain}"),
        ("Precedence", "bulk"),
    ]
