"""Ids in one form (docs/api-conventions.md, "Ids"): every id the newsletter answers is a dashed UUID,
every id it is given (path, query, body, a mail's signed link) may come dashed or in the 32-hex form,
and anything else is an unknown id answered in the shared error shape, never a 500.

The newsletter keeps storing and emitting the 32-hex form: rows, events and the links of mails
already sent carry it, and they keep naming the same subscribers and campaigns.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from distretto_dev.testing import DatabaseTarget, headers_of, read_topic, service_client
from distretto_shared.contracts import newsletter as contracts
from newsletter import domain
from newsletter.app import create_app
from newsletter.links import links_for

from .conftest import SmtpSink, add_subscriber, make_settings, post_bounce, setup_list, setup_template, wait_until

DASHED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEX = re.compile(r"^[0-9a-f]{32}$")


def _hex(dashed: str) -> str:
    return uuid.UUID(dashed).hex


def _is_error(body: Any) -> bool:
    return isinstance(body, dict) and set(body) == {"error", "message", "details"} and bool(body["message"])


async def _stored(app: Any, sql: str) -> list[Any]:
    async with app.state.ctx.db.read() as session:
        return list((await session.execute(sa.text(sql))).scalars())


async def test_answers_are_dashed_and_either_form_finds_the_same_thing(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, sink))
    async with service_client(app) as client:
        lst = await setup_list(client, "ids-news")
        tpl = await setup_template(client)
        sub = await add_subscriber(client, "ids@example.org", ["ids-news"], name="Ida")
        for answered in (lst["id"], tpl["id"], sub["id"], sub["subscriptions"][0]["list_id"]):
            assert DASHED.match(answered), answered
        assert sub["subscriptions"][0]["list_id"] == lst["id"]
        # stored as before: 32-hex
        assert await _stored(app, "SELECT id FROM subscriber") == [_hex(sub["id"])]
        assert await _stored(app, "SELECT id FROM template") == [_hex(tpl["id"])]

        segment = await client.post(
            "/segments", json={"name": "ids-readers", "rule": {"field": "list", "any_of": ["ids-news"]}}
        )
        assert segment.status_code == 201, segment.text
        seg_id = segment.json()["id"]
        assert DASHED.match(seg_id)

        # a campaign named with the 32-hex template and list ids and the dashed segment id
        created = await client.post(
            "/campaigns",
            json={
                "name": "Ids",
                "subject": "Hello",
                "template_id": _hex(tpl["id"]),
                "lists": [_hex(lst["id"])],
                "segments": [seg_id],
            },
        )
        assert created.status_code == 201, created.text
        campaign = created.json()
        assert DASHED.match(campaign["id"])
        assert campaign["template_id"] == tpl["id"]
        assert campaign["lists"] == [lst["id"]] and campaign["segments"] == [seg_id]
        cid = campaign["id"]
        stored = await _stored(app, "SELECT template_id FROM campaign")
        assert stored == [_hex(tpl["id"])]
        # the dashed list id is taken too, and changes nothing here (same list)
        changed = await client.patch(f"/campaigns/{_hex(cid)}", json={"lists": [lst["id"]], "template_id": tpl["id"]})
        assert changed.status_code == 200, changed.text
        assert changed.json()["lists"] == [lst["id"]] and changed.json()["template_id"] == tpl["id"]

        # every path takes either form (and the upper-case 32-hex one) and answers the same
        for path, value in (
            ("/lists/{}", lst["id"]),
            ("/templates/{}", tpl["id"]),
            ("/subscribers/{}", sub["id"]),
            ("/campaigns/{}", cid),
            ("/campaigns/{}/recipients", cid),
            ("/segments/{}", seg_id),
        ):
            answers = [await client.get(path.format(form)) for form in (value, _hex(value), _hex(value).upper())]
            assert [a.status_code for a in answers] == [200, 200, 200], (path, [a.text for a in answers])
            bodies = [a.json() for a in answers]
            assert bodies[0] == bodies[1] == bodies[2], path
        recipients = (await client.get(f"/campaigns/{_hex(cid)}/recipients")).json()
        assert recipients["campaign_id"] == cid and recipients["recipients"] == 1
        assert (await client.get(f"/segments/{_hex(seg_id)}/count")).json() == {"count": 1}
        sample = (await client.get(f"/segments/{seg_id}/sample")).json()["items"]
        assert [m["subscriber_id"] for m in sample] == [sub["id"]]

        # a list given by its id in the query, either form (its slug as before)
        for ref in (lst["id"], _hex(lst["id"]), "ids-news"):
            page = (await client.get("/subscribers", params={"list": ref})).json()
            assert [s["id"] for s in page["items"]] == [sub["id"]], ref
        renamed = await client.patch(f"/templates/{_hex(tpl['id'])}", json={"name": "renamed"})
        assert renamed.status_code == 200 and renamed.json()["id"] == tpl["id"]
        updated = await client.patch(f"/subscribers/{_hex(sub['id'])}", json={"name": "Ida B."})
        assert updated.status_code == 200 and updated.json()["id"] == sub["id"]

        # the campaign goes out; its deliveries and the bounce (reported with the dashed id) answer dashed
        started = await client.post(f"/campaigns/{_hex(cid)}/start")
        assert started.status_code == 200, started.text

        async def delivered() -> Any:
            items = (await client.get(f"/campaigns/{cid}/deliveries", params={"status": "sent"})).json()["items"]
            return items or None

        deliveries = await wait_until(delivered, what="the delivery sent")
        assert deliveries[0]["campaign_id"] == cid and deliveries[0]["subscriber_id"] == sub["id"]
        mail = sink.to("ids@example.org")[0].message
        # the mail names the campaign by the stored form, as every mail sent before did
        assert mail["Feedback-ID"].startswith(f"{_hex(cid)}:")
        r = await post_bounce(client, {"email": "ids@example.org", "kind": "soft", "campaign_id": cid})
        assert r.status_code == 202, r.text
        bounces = (await client.get("/bounces")).json()["items"]
        assert len(bounces) == 1 and DASHED.match(bounces[0]["id"])
        assert bounces[0]["subscriber_id"] == sub["id"] and bounces[0]["campaign_id"] == cid
        assert await _stored(app, "SELECT campaign_id FROM bounce") == [_hex(cid)]

        exported = await client.get(f"/subscribers/{_hex(sub['id'])}/export")
        assert exported.status_code == 200, exported.text
        export = exported.json()
        assert export["subscriber"]["id"] == sub["id"]
        assert [d["campaign_id"] for d in export["deliveries"]] == [cid]
        assert [b["campaign_id"] for b in export["bounces"]] == [cid]
        assert all(DASHED.match(c["id"]) for c in export["consent"])

        # events keep the stored 32-hex form
        records = await read_topic(
            kafka_bootstrap, topic_prefix + contracts.CAMPAIGN_TOPIC.name, min_count=1, timeout=60
        )
        started_events = [r for r in records if headers_of(r)["ce_type"] == contracts.CampaignStarted.event_type]
        assert started_events and headers_of(started_events[0])["ce_subject"] == _hex(cid)

        erased = await client.delete(f"/subscribers/{sub['id']}")
        assert erased.status_code == 204
        assert (await client.get(f"/subscribers/{_hex(sub['id'])}")).status_code == 404


async def test_links_already_sent_and_links_in_either_form_keep_working(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    settings = make_settings(database, kafka_bootstrap, sink)
    app = create_app(settings)
    async with service_client(app) as client:
        await setup_list(client, "links-a")
        await setup_list(client, "links-b")
        await setup_list(client, "links-c")
        tpl = await setup_template(client)
        first = await add_subscriber(client, "first@example.org", ["links-a", "links-b"])
        second = await add_subscriber(client, "second@example.org", ["links-a", "links-c"])
        c = await client.post(
            "/campaigns", json={"name": "L", "subject": "s", "template_id": tpl["id"], "lists": ["links-a"]}
        )
        cid = c.json()["id"]

        # a link as every mail sent so far carries it: the 32-hex subscriber and campaign ids
        old = links_for(settings, _hex(first["id"]), _hex(cid))
        assert HEX.match(
            domain.verify_token(
                settings.secret_key, old["unsubscribe_token"], "unsubscribe", now=datetime.now(UTC)
            ).subject
        )
        page = await client.get(old["preferences_url"].replace("http://service", ""))
        assert page.status_code == 200 and "first@example.org" in page.text and " checked" in page.text
        gone = await client.post(
            old["unsubscribe_url"].replace("http://service", ""), headers={"accept": "application/json"}
        )
        assert gone.status_code == 200 and gone.json()["lists"] == ["links-a"]  # the campaign's list only
        statuses = {
            s["list_slug"]: s["status"]
            for s in (await client.get(f"/subscribers/{first['id']}")).json()["subscriptions"]
        }
        assert statuses == {"links-a": "unsubscribed", "links-b": "confirmed"}

        # a link signed with the dashed ids works the same
        new = links_for(settings, second["id"], cid)
        gone = await client.post(
            new["unsubscribe_url"].replace("http://service", ""), headers={"accept": "application/json"}
        )
        assert gone.status_code == 200 and gone.json()["lists"] == ["links-a"]
        prefs = await client.post(
            new["preferences_url"].replace("http://service", ""),
            json={"lists": ["links-c"], "name": "Second"},
            headers={"accept": "application/json"},
        )
        assert prefs.status_code == 200 and prefs.json()["id"] == second["id"]
        # the campaign's report counts both unsubscribes (recorded with the stored campaign id)
        assert await _stored(app, "SELECT campaign_id FROM consent_record WHERE action = 'unsubscribe'") == [
            _hex(cid),
            _hex(cid),
        ]


BAD_IDS = ("not-an-id", "0" * 31, "g" * 32, "x" * 300, "a%00b", str(uuid.uuid4()), uuid.uuid4().hex)


async def test_an_id_that_is_neither_form_or_unknown_is_a_clear_4xx_in_the_one_shape(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, sink))
    async with service_client(app) as client:
        await setup_list(client, "bad-ids")
        tpl = await setup_template(client)
        for bad in BAD_IDS:
            for method, path, body in (
                ("get", "/lists/{}", None),
                ("get", "/subscribers/{}", None),
                ("patch", "/subscribers/{}", {"name": "x"}),
                ("get", "/subscribers/{}/export", None),
                ("delete", "/subscribers/{}", None),
                ("get", "/templates/{}", None),
                ("patch", "/templates/{}", {"name": "x"}),
                ("get", "/campaigns/{}", None),
                ("patch", "/campaigns/{}", {"name": "x"}),
                ("get", "/campaigns/{}/recipients", None),
                ("post", "/campaigns/{}/start", None),
                ("get", "/campaigns/{}/deliveries", None),
                ("get", "/segments/{}", None),
            ):
                r = await client.request(method, path.format(bad), json=body)
                assert r.status_code in (404, 422), (method, path, bad, r.status_code, r.text)
                assert _is_error(r.json()), (method, path, bad, r.text)
            for field, value in (("template_id", bad), ("lists", [bad])):
                campaign = {"name": "c", "subject": "s", "template_id": tpl["id"], "lists": ["bad-ids"], field: value}
                r = await client.post("/campaigns", json=campaign)
                assert r.status_code == 422 and _is_error(r.json()), (field, bad, r.text)
            r = await client.get("/subscribers", params={"list": bad})
            assert r.status_code in (404, 422) and _is_error(r.json()), (bad, r.text)
        # a NUL (which PostgreSQL refuses in text) in every place an id or a name is given
        nul = "a\x00b"
        for method, path, params, body in (
            ("get", "/subscribers", {"list": nul}, None),
            ("post", "/campaigns", None, {"name": "c", "subject": "s", "template_id": nul, "lists": ["bad-ids"]}),
            ("post", "/campaigns", None, {"name": "c", "subject": "s", "template_id": tpl["id"], "lists": [nul]}),
            ("post", "/campaigns/recipients", None, {"lists": ["bad-ids"], "segments": [nul]}),
            ("post", "/signup", None, {"email": "nul@example.org", "lists": [nul], "consent": True}),
        ):
            r = await client.request(method, path, params=params, json=body)
            assert r.status_code == 422 and _is_error(r.json()), (path, body, r.text)
        assert await _stored(app, "SELECT count(*) FROM campaign") == [0]
