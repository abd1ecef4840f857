"""One recipient's campaign message: the campaign's compiled templates and shared headers, prepared once."""

from __future__ import annotations

from typing import Any

from newsletter.campaigns.models import Campaign
from newsletter.config import Settings
from newsletter.delivery.ledger import Claimed
from newsletter.delivery.mime import (
    PreparedBody,
    assemble,
    build_message,
    clean_header,
    header_block,
    message_head,
    message_id_for,
)
from newsletter.delivery.rendering import ESCAPES, CampaignRenderer, Slot, footer, footer_pieces
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
        self._keys: list[tuple[Slot, str]] = []
        self._bodies = self._prepare()

    def _prepare(self) -> tuple[PreparedBody, PreparedBody] | None:
        """Both bodies (footer included) encoded once, when the templates compiled to pieces and slots."""
        r = self.renderer
        if not r.compiled or r.text_t.pieces is None or r.html_t.pieces is None:
            return None
        text = list(r.text_t.pieces)
        # the footer follows the text with its trailing white space stripped
        while text and isinstance(text[-1], str) and not text[-1].rstrip():
            text.pop()
        if text and not isinstance(text[-1], str):
            return None  # where a value ends the text, its own trailing spaces go too: per mail
        if text:
            text[-1] = str(text[-1]).rstrip()
        keys: dict[tuple[Slot, str], int] = {}

        def index(pieces: list[str | tuple[Slot, str]]) -> list[str | int]:
            return [p if isinstance(p, str) else keys.setdefault(p, len(keys)) for p in pieces]

        text_footer, html_footer = footer_pieces()
        try:
            bodies = (
                PreparedBody(index([p if isinstance(p, str) else (p, "text") for p in text] + text_footer)),
                PreparedBody(index([p if isinstance(p, str) else (p, "html") for p in r.html_t.pieces] + html_footer)),
            )
        except ValueError:
            return None
        self._keys = list(keys)
        return bodies

    def compose(self, item: Claimed) -> tuple[str, bytes]:
        """(Message-ID, message bytes) of one recipient."""
        assert item.email is not None and item.subscriber_id is not None
        links = links_for(self.settings, item.subscriber_id, self.campaign_id)
        if self._bodies is not None:
            fast = self._compose_prepared(item, links)
            if fast is not None:
                return fast
        subscriber = {"name": item.name, "email": item.email, "language": item.language, "attributes": item.attributes}
        values = _values(item, links)
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

    def _compose_prepared(self, item: Claimed, links: dict[str, str]) -> tuple[str, bytes] | None:
        """The common case: the pre-encoded bodies with this recipient's values (``None``: a value is
        missing or cannot take this path, and the mail is rendered in full)."""
        assert self._bodies is not None and item.email is not None and item.subscriber_id is not None
        values = _values(item, links)
        try:
            filled = [ESCAPES[how](values[slot]) for slot, how in self._keys]
            subject = self.renderer.subject_t.join(values)
            text_qp, html_qp = (body.encode(filled) for body in self._bodies)
        except (LookupError, ValueError):
            return None
        message_id = message_id_for(self.campaign_id, item.subscriber_id, self.settings.mail_domain)
        head = message_head(
            from_header=self.from_header,
            to_name=item.name,
            to_addr=item.email,
            subject=clean_header(subject, 300),
            message_id=message_id,
            extra_headers=[("List-Unsubscribe", list_unsubscribe(self.settings, links))],
        )
        return message_id, assemble(head, self.shared_headers, message_id, text_qp, html_qp)


def _values(item: Claimed, links: dict[str, str]) -> dict[Slot, Any]:
    """The recipient's values by template slot: who they are and their own links."""
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
    return values


# -- SMTP ----------------------------------------------------------------------
