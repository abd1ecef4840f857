"""Templates cannot keep the service busy: refused on save, and a recipient's mail fails alone on delivery."""

from __future__ import annotations

import pytest

from distretto_dev.testing import DatabaseTarget, service_client
from newsletter.app import create_app
from newsletter.delivery import rendering, sandbox

from .conftest import SmtpSink, add_subscriber, make_settings, setup_list, setup_template, wait_finished

BOMBS = [
    "{{ 'a' * 100000000 }}",
    "{{ ['a'] * 100000000 }}",
    "{% for i in range(100000000) %}x{% endfor %}",
    "{{ ''|center(100000000) }}",
    "{{ 'a'.ljust(100000000) }}",
    "{{ '%0100000000d'|format(1) }}",
    "{{ '{:>100000000}'.format(1) }}",
    "{{ ('a' * 99999)|replace('a', 'a' * 99999) }}",
    "{{ 7 ** 100000000 }}",
    "{% for i in range(10000) %}{{ 'a' * 99999 }}{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% for c in 'a' * 99999 %}{% for d in 'a' * 99999 %}{% endfor %}{% endfor %}",
]


@pytest.mark.parametrize("source", BOMBS)
def test_every_bomb_is_refused_with_a_reason(source: str) -> None:
    with pytest.raises(ValueError, match="rendering limits"):
        rendering.check_template(source, html=False)


def test_ordinary_templates_still_render() -> None:
    renderer = rendering.CampaignRenderer("Hi {{ subscriber.name }}", "<p>{{ 'ab' * 3 }}</p>", "{{ range(3)|list }}")
    mail = renderer.render(dict(sandbox.SAMPLE_CONTEXT))
    assert (mail.subject, mail.html, mail.text) == ("Hi Anna Rossi", "<p>ababab</p>", "[0, 1, 2]")


async def test_a_bomb_is_refused_on_save_and_fails_only_its_recipient_on_delivery(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, sink))
    async with service_client(app) as client:
        r = await client.post(
            "/templates", json={"name": "bomb", "subject": "s", "body_html": "x", "body_text": BOMBS[0]}
        )
        assert r.status_code == 422 and "rendering limits" in r.json()["message"], r.text
        assert (await client.get("/templates")).json()["total"] == 0

        # A template that is harmless with ordinary data, and explodes with one subscriber's attribute.
        await setup_list(client, "news")
        tpl = await setup_template(client, body_text="Hello {{ 'x' * subscriber.attributes.get('n', 1) }}")
        await add_subscriber(client, "calm@example.org", ["news"], attributes={"n": 3})
        await add_subscriber(client, "bomb@example.org", ["news"], attributes={"n": 100000000})
        r = await client.post(
            "/campaigns", json={"name": "c", "subject": "s", "template_id": tpl["id"], "lists": ["news"]}
        )
        cid = r.json()["id"]
        assert (await client.post(f"/campaigns/{cid}/start")).status_code == 200
        done = await wait_finished(client, cid)
        assert (done["stats"]["sent"], done["stats"]["failed"]) == (1, 1)
        failed = (await client.get(f"/campaigns/{cid}/deliveries", params={"status": "failed"})).json()["items"]
        assert len(failed) == 1 and "multiplication" in (failed[0]["smtp_reply"] or ""), failed
        assert "xxx" in sink.to("calm@example.org")[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert sink.to("bomb@example.org") == []
