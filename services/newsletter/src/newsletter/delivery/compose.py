"""One recipient's campaign message: the campaign's compiled templates and shared headers, prepared once."""

from __future__ import annotations

from typing import Any

from newsletter.campaigns.models import Campaign
from newsletter.config import Settings
from newsletter.delivery.ledger import Claimed
from newsletter.delivery.mime import build_message, header_block, message_id_for
from newsletter.delivery.rendering import CampaignRenderer, Slot, footer
from newsletter.links import links_for, list_headers, list_unsubscribe
from newsletter.templates.models import Template


class CampaignMail:
    """What every mail of one campaign shares, prepared once: compiled templates and invariant headers."""

    def __init__(
        self, settings: Settings, campaign: Campaign, template: Template, *, from_header: str, subject_prefix: str = ""
    ) -> None:
        self.settings = settings
        self.campaign_id = campaign.id
        self.lists = list(campaign.lists)
        self.from_header = from_header
        campaign_ctx = {"id": campaign.id, "name": campaign.name, "data": campaign.data}
        self.campaign_ctx = campaign_ctx
        self.renderer = CampaignRenderer(
            subject_prefix + campaign.subject, template.body_html, template.body_text, {"campaign": campaign_ctx}
        )
        # every header but List-Unsubscribe (it names the recipient's token) is the same for all mails
        probe = list_headers(settings, {"unsubscribe_url": "", "unsubscribe_token": ""}, campaign)
        self.shared_headers = header_block([h for h in probe if h[0] != "List-Unsubscribe"])
        self.qp_cache: dict[str, bytes] = {}

    def compose(self, item: Claimed) -> tuple[str, bytes]:
        """(Message-ID, message bytes) of one recipient."""
        assert item.email is not None and item.subscriber_id is not None
        links = links_for(self.settings, item.subscriber_id, self.campaign_id)
        subscriber = {"name": item.name, "email": item.email, "language": item.language, "attributes": item.attributes}
        values: dict[Slot, Any] = {
            ("subscriber", "name"): item.name,
            ("subscriber", "email"): item.email,
            ("subscriber", "language"): item.language,
            ("unsubscribe_url",): links["unsubscribe_url"],
            ("preferences_url",): links["preferences_url"],
            ("unsubscribe_token",): links["unsubscribe_token"],
        }
        for key, value in item.attributes.items():
            values[("subscriber", "attributes", key)] = value
        mail = self.renderer.render({"subscriber": subscriber, "campaign": self.campaign_ctx, **links}, values)
        text, html = footer(
            mail.text, mail.html, unsubscribe_url=links["unsubscribe_url"], preferences_url=links["preferences_url"]
        )
        message_id = message_id_for(self.campaign_id, item.subscriber_id, self.settings.mail_domain)
        return message_id, build_message(
            from_header=self.from_header,
            to_name=item.name,
            to_addr=item.email,
            subject=mail.subject,
            text=text,
            html=html,
            message_id=message_id,
            extra_headers=[("List-Unsubscribe", list_unsubscribe(self.settings, links))],
            shared_headers=self.shared_headers,
            qp_cache=self.qp_cache,
        )


# -- SMTP ----------------------------------------------------------------------
