"""A campaign mail built from the bodies encoded once per campaign reads back exactly as the same mail
rendered and encoded in full for that recipient (the path every mail took before)."""

from __future__ import annotations

import email
import email.policy
import secrets
from typing import Any

import pytest
from jinja2 import TemplateError

from newsletter.campaigns.models import Campaign
from newsletter.config import Settings
from newsletter.delivery.compose import CampaignMail
from newsletter.delivery.ledger import Claimed
from newsletter.delivery.mime import PreparedBody
from newsletter.templates.models import Template

SETTINGS = Settings(link_base_url="https://d.example/newsletter", secret_key=secrets.token_urlsafe(32))

LONG = "Notizie del distretto: bandi, eventi e opportunità. " * 40
TEMPLATES = [
    # the name inside one long line (soft line breaks on both sides of the value)
    (
        "Notizie, {{ subscriber.name }}",
        f"<h1>Ciao {{{{ subscriber.name }}}}</h1><p>{LONG}</p>",
        f"Ciao {{{{ subscriber.name }}}}\n\n{LONG}",
    ),
    # values at the start and the end of lines, an attribute, the links, trailing blank lines
    (
        "Per {{ subscriber.attributes.city }}",
        '{{ subscriber.name }}<br>\n<a href="{{ unsubscribe_url }}">x</a> {{ subscriber.email }}\n'
        "{{ subscriber.attributes.city }}",
        "{{ subscriber.name }}\n{{ preferences_url }}\n= {{ subscriber.language }} =\n\n   \n",
    ),
    # no per-recipient field but the footer's links; trailing spaces and lines ahead of the footer
    ("Fisso", "<p>Uguale per tutti</p>", "Uguale per tutti   \n\n \n"),
]
PEOPLE = [
    ("Mario Rossi", {"city": "Siena"}),
    ('Zoë D\'Àngelo <b>&</b> "Z"  ', {"city": "Città = Firenze"}),
    ("", {"city": ""}),
    ("x" * 180, {"city": "è" * 100}),
    ("Riga\ndue", {"city": "a\tb "}),
    ("Carriage\rreturn", {"city": "c"}),
    ("Nessuna città", {}),
]


def _mail(subject: str, html: str, text: str) -> CampaignMail:
    campaign = Campaign(id="c" * 32, name="Campagna", subject=subject, template_id="t" * 32, lists=["l"], data={})
    template = Template(id="t" * 32, name="t", subject=subject, body_html=html, body_text=text)
    return CampaignMail(SETTINGS, campaign, template, from_header="Distretto <news@d.example>")


def _read(raw: bytes) -> dict[str, Any]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects
    parts = list(msg.iter_parts())
    assert all(not p.defects for p in parts)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.endswith(b"\r\n") and raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n")
    headers = {k: str(v) for k, v in msg.items() if k != "Date"}
    return {"headers": headers, "bodies": [p.get_content() for p in parts]}


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_mail_from_the_prepared_bodies_reads_back_as_the_fully_rendered_one(template: tuple[str, str, str]) -> None:
    mail = _mail(*template)
    assert mail._bodies is not None  # the campaign takes the prepared path
    for i, (name, attributes) in enumerate(PEOPLE):
        item = Claimed(
            id=i,
            token="t",
            kind="campaign",
            campaign_id=mail.campaign_id,
            subscriber_id=f"{i:032d}",
            email=f"p{i}@example.org",
            payload=None,
            attempts=0,
            name=name,
            attributes=attributes,
        )
        if not attributes and "attributes" in template[0] + template[1] + template[2]:
            with pytest.raises(TemplateError):  # a missing field fails the mail, as in full rendering
                mail.compose(item)
            continue
        fast = mail.compose(item)
        bodies, mail._bodies = mail._bodies, None  # the full rendering of the same mail
        try:
            slow = mail.compose(item)
        finally:
            mail._bodies = bodies
        assert fast[0] == slow[0]
        assert _read(fast[1]) == _read(slow[1])
        assert fast[1].count(b"\r\n") >= slow[1].count(b"\r\n")


def test_what_cannot_be_prepared_is_rendered_in_full() -> None:
    # a value ending the text (its trailing spaces go before the footer), a field in a condition
    assert _mail("s", "<p>x</p>", "Ciao {{ subscriber.name }}  \n")._bodies is None
    assert _mail("s", "{% if subscriber.name %}x{% endif %}", "Ciao\n")._bodies is None
    with pytest.raises(ValueError):
        PreparedBody(["x\r\n"])
    with pytest.raises(ValueError):
        PreparedBody(["x", 0])
    with pytest.raises(ValueError):
        PreparedBody(["x\n", 0, "y\n"]).encode(["a\rb"])
    assert PreparedBody(["x", 0, "y\n"]).encode(["a"]) == b"x=\r\na=\r\ny\r\n"
