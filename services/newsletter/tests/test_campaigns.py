"""Campaigns over a real SMTP server: audience, one copy each, exclusions, RFC 8058, lifecycle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from distretto_dev.testing import DatabaseTarget, service_client
from newsletter.app import create_app

from .conftest import (
    SmtpSink,
    add_subscriber,
    campaign_status,
    make_settings,
    post_bounce,
    setup_list,
    setup_template,
    wait_finished,
    wait_until,
)


async def start_campaign(client: Any, template_id: str, lists: list[str], **kw: Any) -> dict[str, Any]:
    r = await client.post(
        "/campaigns", json={"name": "May news", "subject": "News", "template_id": template_id, "lists": lists, **kw}
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"/campaigns/{r.json()['id']}/start")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_one_copy_each_exclusions_headers_and_one_click(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    sink.refuse["gone@example.org"] = "550 5.1.1 <gone@example.org>: no such user"
    settings = make_settings(database, kafka_bootstrap, sink)
    async with service_client(create_app(settings)) as client:
        a = await setup_list(client, "oncology")
        await setup_list(client, "events")
        await setup_list(client, "other")
        tpl = await setup_template(client)
        both = await add_subscriber(client, "both@example.org", ["oncology", "events"], name="Bianca Both")
        await add_subscriber(client, "one@example.org", ["events"], name="Oscar One")
        await add_subscriber(client, "gone@example.org", ["events"], name="Gone")
        await add_subscriber(client, "elsewhere@example.org", ["other"])
        # unconfirmed: added without consent proof
        r = await client.post("/subscribers", json={"email": "unconf@example.org", "lists": ["events"]})
        assert r.status_code == 201
        unsub = await add_subscriber(client, "left@example.org", ["events"])
        await add_subscriber(client, "bounced@example.org", ["events"])
        assert (await post_bounce(client, {"email": "bounced@example.org", "kind": "hard"})).status_code == 202

        # left@ unsubscribes through its preferences before the campaign
        from newsletter.links import links_for

        prefs = links_for(settings, unsub["id"])["preferences_url"].replace("http://service", "")
        r = await client.post(
            prefs, json={"lists": [], "unsubscribe_all": True}, headers={"accept": "application/json"}
        )
        assert r.status_code == 200, r.text

        campaign = await start_campaign(client, tpl["id"], [a["id"], "events"])
        assert campaign["status"] == "running"
        assert campaign["recipients"] == 3  # both, one, gone
        done = await wait_finished(client, campaign["id"])
        assert done["stats"]["sent"] == 2 and done["stats"]["failed"] == 1

        # one copy each; nobody excluded got anything (the confirmation mail of unconf@ aside)
        counts = sink.count_by_rcpt()
        assert counts["both@example.org"] == 1 and counts["one@example.org"] == 1
        assert counts["gone@example.org"] == 0
        for excluded in ("elsewhere@example.org", "left@example.org", "bounced@example.org"):
            assert counts[excluded] == 0
        assert all("confirm" in r.message["Subject"].lower() for r in sink.to("unconf@example.org"))

        # the permanent refusal is a hard bounce: suppressed
        gone = (await client.get("/subscribers", params={"status": "suppressed"})).json()
        assert {s["email"] for s in gone["items"]} == {"gone@example.org", "bounced@example.org"}
        failed = (await client.get(f"/campaigns/{campaign['id']}/deliveries", params={"status": "failed"})).json()
        assert failed["items"][0]["smtp_code"] == 550 and "no such user" in failed["items"][0]["smtp_reply"]
        sent = (await client.get(f"/campaigns/{campaign['id']}/deliveries", params={"status": "sent"})).json()
        assert all(d["smtp_reply"].startswith("250") for d in sent["items"])

        # what a mailbox provider sees
        msg = sink.to("both@example.org")[0].message
        assert not msg.defects and msg.get_content_type() == "multipart/alternative"
        assert msg["Subject"] == "News"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        lu = str(msg["List-Unsubscribe"])
        https = lu.split("<", 1)[1].split(">", 1)[0]
        assert https.startswith("http://service/unsubscribe/") and "<mailto:" in lu
        assert msg["Message-ID"] == sent["items"][0]["message_id"] or msg["Message-ID"] in {
            d["message_id"] for d in sent["items"]
        }
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "Dear Bianca Both" in text and https in text and "Unsubscribe" in html

        # RFC 8058 one-click: a POST with the body the mailbox provider sends, no further step
        r = await client.post(
            https.replace("http://service", ""),
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200 and r.json()["status"] == "unsubscribed"
        subs = {
            s["list_slug"]: s["status"]
            for s in (await client.get(f"/subscribers/{both['id']}")).json()["subscriptions"]
        }
        assert subs == {"oncology": "unsubscribed", "events": "unsubscribed"}
        # the campaign's report counts the refusal as a bounce and the one-click as an unsubscribe
        stats = (await client.get(f"/campaigns/{campaign['id']}")).json()["stats"]
        assert (stats["bounced"], stats["unsubscribed"]) == (1, 1), stats

        # a second campaign to the same lists does not reach the unsubscribed person
        again = await start_campaign(client, tpl["id"], ["events"], name="June")
        await wait_finished(client, again["id"])
        assert sink.count_by_rcpt()["both@example.org"] == 1
        assert sink.count_by_rcpt()["one@example.org"] == 2

        # a finished campaign cannot start again
        r = await client.post(f"/campaigns/{campaign['id']}/start")
        assert r.status_code == 409 and "finished" in r.json()["message"]


async def test_pause_resume_and_cancel(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    sink.delay = 0.03
    settings = make_settings(database, kafka_bootstrap, sink, claim_batch=5)
    async with service_client(create_app(settings)) as client:
        await setup_list(client, "all")
        tpl = await setup_template(client)
        emails = [f"p{i:02d}@example.org" for i in range(30)]
        for e in emails:
            await add_subscriber(client, e, ["all"])
        c = await start_campaign(client, tpl["id"], ["all"])
        await wait_until(lambda: len(sink.received) >= 5, what="first mails")
        r = await client.post(f"/campaigns/{c['id']}/pause")
        assert r.status_code == 200 and r.json()["status"] == "paused"
        assert (await client.post(f"/campaigns/{c['id']}/pause")).status_code == 409

        # in-flight transactions end; then nothing more arrives while paused
        async def settled() -> bool:
            st = (await campaign_status(client, c["id"]))["stats"]
            return st["sending"] == 0

        await wait_until(settled, what="in-flight sends settled")
        at_pause = len(sink.received)
        await asyncio.sleep(1.0)  # several scheduler ticks and worker polls: nothing may move
        st = (await campaign_status(client, c["id"]))["stats"]
        assert st["pending"] > 0 and st["sent"] == at_pause < 30
        assert len(sink.received) == at_pause

        r = await client.post(f"/campaigns/{c['id']}/resume")
        assert r.status_code == 200 and r.json()["status"] == "running"
        await wait_finished(client, c["id"])
        assert sink.count_by_rcpt() == {e: 1 for e in emails}

        # cancel a second campaign midway: the rest is never sent
        c2 = await start_campaign(client, tpl["id"], ["all"], name="second")
        await wait_until(lambda: len(sink.received) >= 33, what="second campaign under way")
        r = await client.post(f"/campaigns/{c2['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"

        async def no_inflight() -> bool:
            st = (await campaign_status(client, c2["id"]))["stats"]
            return st["sending"] == 0 and st["pending"] == 0

        await wait_until(no_inflight, what="cancel settled")
        st = (await campaign_status(client, c2["id"]))["stats"]
        delivered = len(sink.received) - 30
        assert st["sent"] == delivered and st["cancelled"] == 30 - delivered and delivered < 30
        assert max(sink.count_by_rcpt().values()) <= 2
        assert (await client.post(f"/campaigns/{c2['id']}/resume")).status_code == 409


async def test_start_refuses_a_campaign_that_cannot_render_and_changes_nothing(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    settings = make_settings(database, kafka_bootstrap, sink)
    app = create_app(settings)
    async with service_client(app) as client:
        await setup_list(client, "events")
        # A field no subscriber has: every mail would fail to render.
        tpl = await setup_template(client, body_text="Dear {{ subscriber.attributes.company_name }}\n")
        await add_subscriber(client, "first@example.org", ["events"], name="First")
        await add_subscriber(client, "second@example.org", ["events"], name="Second")
        r = await client.post(
            "/campaigns", json={"name": "Broken", "subject": "News", "template_id": tpl["id"], "lists": ["events"]}
        )
        cid = r.json()["id"]
        outbox = await _outbox_count(app)

        r = await client.post(f"/campaigns/{cid}/start")
        assert r.status_code == 422, r.text
        body = r.json()
        assert "cannot start: it renders for none of the 2 recipients tried" in body["message"]
        assert "company_name" in body["message"]
        after = await campaign_status(client, cid)
        assert (after["status"], after["recipients"], after["started_at"]) == ("draft", 0, None)
        assert (await client.get(f"/campaigns/{cid}/deliveries")).json()["total"] == 0
        assert await _outbox_count(app) == outbox  # no CampaignStarted / CampaignFinished
        assert sink.received == []

        # Scheduled, the scheduler does not start it either: it goes back to draft for the staff.
        send_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        assert (await client.post(f"/campaigns/{cid}/schedule", json={"send_at": send_at})).status_code == 200

        async def back_to_draft() -> bool:
            return (await campaign_status(client, cid))["status"] == "draft"

        await wait_until(back_to_draft, what="the unrenderable scheduled campaign back to draft")
        assert (await client.get(f"/campaigns/{cid}/deliveries")).json()["total"] == 0
        assert await _outbox_count(app) == outbox and sink.received == []

        # Corrected, it starts and reaches everyone.
        r = await client.patch(f"/templates/{tpl['id']}", json={"body_text": "Dear {{ subscriber.name }}\n"})
        assert r.status_code == 200, r.text
        assert (await client.post(f"/campaigns/{cid}/start")).status_code == 200
        done = await wait_finished(client, cid)
        assert (done["recipients"], done["stats"]["sent"], done["stats"]["failed"]) == (2, 2, 0)


async def _outbox_count(app: Any) -> int:
    import sqlalchemy as sa

    async with app.state.ctx.db.read() as session:
        return int((await session.execute(sa.text("SELECT count(*) FROM outbox"))).scalar_one())


async def test_recipient_count_before_start_is_what_the_smtp_server_receives(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    """The count a draft shows is the audience its start freezes: lists, interests, segments,
    consent and suppression; counted by the same selection, so it equals the mails that arrive."""
    settings = make_settings(database, kafka_bootstrap, sink)
    async with service_client(create_app(settings)) as client:
        await setup_list(client, "oncology")
        await setup_list(client, "events")
        await setup_list(client, "other")
        tpl = await setup_template(client)
        # counted: confirmed on a chosen list (once, even on both), with a chosen interest, not in Siena's segment
        await add_subscriber(client, "both@example.org", ["oncology", "events"], interests=["cart"])
        await add_subscriber(client, "one@example.org", ["events"], interests=["cart", "rare"])
        await add_subscriber(client, "two@example.org", ["oncology"], interests=["rare"])
        # not counted: another list, no chosen interest, unconfirmed, suppressed, outside the segment
        await add_subscriber(client, "elsewhere@example.org", ["other"], interests=["cart"])
        await add_subscriber(client, "nointerest@example.org", ["events"], interests=["sport"])
        r = await client.post("/subscribers", json={"email": "unconf@example.org", "lists": ["events"]})
        assert r.status_code == 201
        await add_subscriber(client, "bounced@example.org", ["events"], interests=["cart"])
        assert (await post_bounce(client, {"email": "bounced@example.org", "kind": "hard"})).status_code == 202
        await add_subscriber(client, "outside@example.org", ["events"], interests=["rare", "sport"])
        segment = {"name": "no sport", "rule": {"field": "interest", "none_of": ["sport"]}}
        assert (await client.post("/segments", json=segment)).status_code == 201

        body = {
            "name": "Autumn",
            "subject": "News",
            "template_id": tpl["id"],
            "lists": ["oncology", "events"],
            "interests": ["cart", "rare"],
            "segments": ["no sport"],
        }
        # while choosing, before anything is saved
        choice = {k: body[k] for k in ("lists", "interests", "segments")}
        r = await client.post("/campaigns/recipients", json=choice)
        assert r.status_code == 200, r.text
        assert r.json() == {"recipients": 3}
        assert (await client.post("/campaigns/recipients", json={"lists": ["events"]})).json()["recipients"] == 4
        for bad, words in (
            ({"lists": []}, "lists"),
            ({"lists": ["nope"]}, "nope"),
            ({"lists": ["events"], "segments": ["nope"]}, "no segment"),
            ({"lists": ["events"], "colour": "red"}, "colour"),
        ):
            r = await client.post("/campaigns/recipients", json=bad)
            assert r.status_code == 422 and words in r.json()["message"], r.text

        r = await client.post("/campaigns", json=body)
        assert r.status_code == 201, r.text
        campaign = r.json()
        r = await client.get(f"/campaigns/{campaign['id']}/recipients")
        assert r.status_code == 200, r.text
        before = r.json()
        assert before == {"campaign_id": campaign["id"], "status": "draft", "recipients": 3, "frozen": False}

        # after a change, the count follows (a draft is counted anew each time)
        assert (await client.patch(f"/campaigns/{campaign['id']}", json={"interests": ["rare"]})).status_code == 200
        assert (await client.get(f"/campaigns/{campaign['id']}/recipients")).json()["recipients"] == 2
        assert (await client.patch(f"/campaigns/{campaign['id']}", json={"interests": ["cart", "rare"]})).status_code
        count = (await client.get(f"/campaigns/{campaign['id']}/recipients")).json()["recipients"]

        sink.received.clear()  # confirmation mails of the set-up aside
        r = await client.post(f"/campaigns/{campaign['id']}/start")
        assert r.status_code == 200, r.text
        assert r.json()["recipients"] == count
        done = await wait_finished(client, campaign["id"])
        delivered = [m for m in sink.received if m.message["Subject"] == "News"]
        assert len(delivered) == count == done["stats"]["sent"] == 3
        assert {m.rcpt for m in delivered} == {"both@example.org", "one@example.org", "two@example.org"}
        after = (await client.get(f"/campaigns/{campaign['id']}/recipients")).json()
        assert after == {"campaign_id": campaign["id"], "status": "finished", "recipients": 3, "frozen": True}

        assert (await client.get("/campaigns/nope/recipients")).status_code == 404


async def test_subscriber_search_runs_over_everyone_in_pages(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    """The search box finds a person however many subscribers come before; % and _ are literal."""
    settings = make_settings(database, kafka_bootstrap, sink)
    async with service_client(create_app(settings)) as client:
        await setup_list(client, "news")
        for n in range(12):
            await add_subscriber(client, f"reader{n:02d}@example.org", ["news"], name=f"Reader {n}")
        await add_subscriber(client, "maria.rossi@ospedale.example", ["news"], name="Maria Rossi")
        await add_subscriber(client, "m_rossi@lab.example", ["news"], name="Mario Rossi")
        await add_subscriber(client, "100pct@lab.example", ["news"], name="Cento")

        async def emails(**params: Any) -> tuple[list[str], int]:
            r = await client.get("/subscribers", params=params)
            assert r.status_code == 200, r.text
            return [s["email"] for s in r.json()["items"]], r.json()["total"]

        # the last ones created, past a first page of 5
        assert await emails(q="ROSSI", limit=5) == (["maria.rossi@ospedale.example", "m_rossi@lab.example"], 2)
        assert await emails(q="mario") == (["m_rossi@lab.example"], 1)  # the name too
        assert await emails(q="m_r") == (["m_rossi@lab.example"], 1)  # "_" is not a wildcard
        assert await emails(q="100%") == ([], 0)  # nor is "%"
        page1, total = await emails(q="reader", limit=5, offset=0)
        page3, _ = await emails(q="reader", limit=5, offset=10)
        assert (
            total == 12
            and page1[0] == "reader00@example.org"
            and page3 == ["reader10@example.org", "reader11@example.org"]
        )
        assert await emails(q="rossi", status="suppressed") == ([], 0)
        assert await emails(q="rossi", list="news", status="confirmed") == (
            ["maria.rossi@ospedale.example", "m_rossi@lab.example"],
            2,
        )
        r = await client.get("/subscribers", params={"q": "x" * 201})
        assert r.status_code == 422 and "q" in r.json()["message"]
