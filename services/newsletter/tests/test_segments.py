"""Segments over a register built from events on the real broker: exact recipients, a count that
follows the register, bad rules refused, staff only."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import sqlalchemy as sa

from distretto_dev.testing import (
    DatabaseTarget,
    headers_of,
    identity_headers,
    publish_events,
    read_topic,
    service_client,
)
from distretto_shared.contracts import matchmaking, membership, projects
from distretto_shared.contracts import newsletter as contracts
from distretto_shared.conventions import hex_id
from distretto_shared.identity import Principal
from distretto_shared.topics import ensure_topics
from newsletter import links
from newsletter.app import SPEC, create_app
from newsletter.digest import service as digest_service
from newsletter.members import service as members_service

from .conftest import SmtpSink, add_subscriber, make_settings, setup_list, wait_until
from .test_consumers import PEOPLE, contact, membership_api

TODAY = date.today()


def org(
    oid: str, name: str, kind: str, sectors: list[str], size: str | None, province: str, **kw: Any
) -> membership.OrganisationProfile:
    return membership.OrganisationProfile(
        organisation_id=oid, name=name, kind=kind, sectors=sectors, size_class=size, province=province, **kw
    )


ORGS = {
    "o1": org("o1", "Pisa Biotech", "company", ["biotech"], "small", "PI", competences=["Genomics"]),
    "o2": org("o2", "Siena Pharma", "company", ["pharma"], "medium", "SI"),
    "o3": org("o3", "Firenze Devices", "company", ["medical devices"], "micro", "FI"),
    "o4": org("o4", "Lucca Pharma Group", "company", ["pharma"], "large", "LU"),
    "o5": org("o5", "Università di Pisa", "university", ["biotech"], None, "PI"),
    "o6": org("o6", "Arezzo Bio", "company", ["biotech"], "small", "AR"),
}

# contact id → (organisation, address, consents to the newsletter, role)
CONTACTS = {
    "c1": ("o1", "ceo@pisabiotech.example", True, "CEO"),
    "c2": ("o1", "no-news@pisabiotech.example", False, "CTO"),
    "c3": ("o2", "rd@sienapharma.example", True, "R&D manager"),
    "c4": ("o3", "info@firenzedevices.example", True, "CEO"),
    "c5": ("o4", "bd@luccapharma.example", True, "Business development"),
    "c6": ("o5", "tto@unipi.example", True, "Technology transfer officer"),
    "c7": ("o6", "ceo@arezzobio.example", True, "CEO"),
}


def register_events() -> list[Any]:
    events: list[Any] = []
    for oid, profile in ORGS.items():
        events.append(membership.OrganisationRegistered(organisation_id=oid, profile=profile))
        events.append(membership.OrganisationJoined(organisation_id=oid, profile=profile, joined_on=TODAY))
    events.append(membership.OrganisationSuspended(organisation_id="o6", reason="unpaid fee"))
    for cid, (oid, email, consent, role) in CONTACTS.items():
        ref = contact(cid, oid, email, consent)
        PEOPLE[cid]["role"] = role
        events.append(membership.ContactAdded(contact_id=cid, organisation_id=oid, contact=ref))
    permed = projects.ProjectSummary(
        project_id="p1", acronym="EP PerMed", title="Personalised medicine", status="SIGNED"
    )
    onco = projects.ProjectSummary(project_id="p2", acronym="ONCOTARGET", title="Targets", status="SIGNED")
    events += [
        projects.ProjectRegistered(project_id="p1", project=permed),
        projects.ProjectRegistered(project_id="p2", project=onco),
        projects.ParticipantAdded(
            project_id="p1", participant_id="pa1", name="Università di Pisa", role="coordinator", organisation_id="o5"
        ),
        projects.ParticipantAdded(
            project_id="p1", participant_id="pa2", name="Siena Pharma", role="participant", organisation_id="o2"
        ),
        projects.ParticipantAdded(project_id="p1", participant_id="pa3", name="Charité", role="participant"),
        # Pisa Biotech takes part in ONCOTARGET, recognised as a member later
        projects.ParticipantAdded(project_id="p2", participant_id="pb1", name="PISA BIOTECH SRL", role="participant"),
        projects.ParticipantLinked(project_id="p2", participant_id="pb1", organisation_id="o1"),
        matchmaking.OpportunityPublished(
            opportunity_id="op1",
            opportunity_type="technology_offer",
            title="CAR-T manufacturing",
            keywords=["CAR-T", "cell therapy"],
            owner_organisation_id="o3",
        ),
    ]
    return events


SMES = {
    "all": [
        {"field": "sector", "any_of": ["pharma", "Biotech"]},
        {"field": "size_class", "any_of": ["micro", "small", "medium"]},
        {"field": "status", "any_of": ["active"]},
    ]
}
PERMED = {"field": "project", "any_of": ["ep permed"]}
SOUTH_OR_CART = {
    "all": [
        {"any": [{"field": "province", "any_of": ["si", "AR", "GR"]}, {"field": "keyword", "any_of": ["car-t"]}]},
        {"none": [{"field": "status", "any_of": ["suspended", "lapsed"]}]},
    ]
}


async def test_segments_follow_the_register(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    await ensure_topics(kafka_bootstrap, SPEC.topics)
    settings = make_settings(
        database, kafka_bootstrap, sink, membership_url="http://127.0.0.1:9", contact_fetch_interval=3600
    )
    app = create_app(settings)
    async with service_client(app) as client, membership_api([]) as members_api:
        await publish_events(kafka_bootstrap, register_events())

        # a subscriber of a public list who is no member: in no register segment
        await setup_list(client, "news")
        await add_subscriber(client, "reader@example.org", ["news"], interests=["biotech"])

        async def register_known() -> bool:
            await members_service.fetch_contact_details(app.state.ctx.context(), client=members_api)
            r = await client.post("/segments/preview", json={"rule": SOUTH_OR_CART})
            emails = {m["email"] for m in r.json()["items"]}
            return (
                emails == {"rd@sienapharma.example", "info@firenzedevices.example"}
                and (
                    await client.post("/segments/preview", json={"rule": {"field": "role", "any_of": ["ceo"]}})
                ).json()["total"]
                == 3  # c1, c4 and c7 (c7's organisation is suspended: role alone does not look at it)
            )

        await wait_until(register_known, what="the register in the audience read model")

        segs = {}
        for name, rule in [
            ("SMEs pharma biotech", SMES),
            ("EP PerMed partners", PERMED),
            ("South or CAR-T", SOUTH_OR_CART),
        ]:
            r = await client.post("/segments", json={"name": name, "rule": rule})
            assert r.status_code == 201, r.text
            segs[name] = r.json()

        # the segment events are on the newsletter's topic, without any address
        records = await read_topic(kafka_bootstrap, topic_prefix + contracts.SEGMENT_TOPIC.name, min_count=3)
        bodies = [json.loads(r.value) for r in records]
        assert {b["name"] for b in bodies} == set(segs)
        assert {headers_of(r)["ce_type"] for r in records} == {contracts.SegmentCreated.event_type}
        assert "@" not in str(bodies)

        expected = {
            "SMEs pharma biotech": {"ceo@pisabiotech.example", "rd@sienapharma.example"},
            "EP PerMed partners": {"rd@sienapharma.example", "tto@unipi.example"},
            "South or CAR-T": {"rd@sienapharma.example", "info@firenzedevices.example"},
        }
        for name, seg in segs.items():
            assert (await client.get(f"/segments/{seg['id']}/count")).json() == {"count": len(expected[name])}
            page = (await client.get(f"/segments/{seg['id']}/sample", params={"limit": 1})).json()
            assert page["total"] == len(expected[name]) and len(page["items"]) == 1
            page2 = (await client.get(f"/segments/{seg['id']}/sample", params={"limit": 1, "offset": 1})).json()
            assert {page["items"][0]["email"], page2["items"][0]["email"]} == expected[name]

        # one campaign per segment, to the members list: exactly the segment's members get it
        template = (
            await client.post(
                "/templates",
                json={"name": "t", "subject": "{{ campaign.name }}", "body_html": "<p>x</p>", "body_text": "x"},
            )
        ).json()
        for name, seg in segs.items():
            r = await client.post(
                "/campaigns",
                json={
                    "name": f"To {name}",
                    "subject": "{{ campaign.name }}",
                    "template_id": template["id"],
                    "lists": ["members"],
                    "segments": [seg["name"]],
                },
            )
            assert r.status_code == 201, r.text
            assert r.json()["segments"] == [seg["id"]]
            started = (await client.post(f"/campaigns/{r.json()['id']}/start")).json()
            assert started["recipients"] == len(expected[name])

        def got(name: str) -> set[str]:
            return {m.rcpt for m in sink.received if m.message["Subject"] == f"To {name}"}

        await wait_until(lambda: all(got(n) == expected[n] for n in expected), what="the three campaigns delivered")
        assert not any(m.rcpt == "no-news@pisabiotech.example" for m in sink.received)  # no consent: never

        # the register changes: Firenze Devices moves into biotech; the SME segment's count follows
        moved = ORGS["o3"].model_copy(update={"sectors": ["biotech", "medical devices"], "status": "active"})
        await publish_events(kafka_bootstrap, [membership.OrganisationUpdated(organisation_id="o3", profile=moved)])

        async def followed() -> bool:
            r = await client.get(f"/segments/{segs['SMEs pharma biotech']['id']}/count")
            return r.json()["count"] == 3  # type: ignore[no-any-return]

        await wait_until(followed, what="the segment count following the sector change")
        # and Siena Pharma leaves: out of every segment
        await publish_events(kafka_bootstrap, [membership.OrganisationLeft(organisation_id="o2")])

        async def left() -> bool:
            r = await client.get(f"/segments/{segs['SMEs pharma biotech']['id']}/count")
            return r.json()["count"] == 2  # type: ignore[no-any-return]

        await wait_until(left, what="the segment count following the organisation leaving")

        # the digest configured with a segment goes to that segment only
        r = await client.patch(f"/segments/{segs['EP PerMed partners']['id']}", json={"digest": True})
        assert r.status_code == 200 and r.json()["digest"] is True
        digest = (await client.post("/digest")).json()
        assert digest["segments"] == [segs["EP PerMed partners"]["id"]]
        started = (await client.post(f"/campaigns/{digest['id']}/start")).json()
        assert started["recipients"] == 2
        await wait_until(
            lambda: (
                {m.rcpt for m in sink.received if m.message["Subject"] == digest["name"]}
                == {"rd@sienapharma.example", "tto@unipi.example"}
            ),
            what="the digest delivered to the segment",
        )

        # a segment a draft campaign targets cannot be deleted; an unused one can
        draft = await client.post(
            "/campaigns",
            json={
                "name": "Draft",
                "subject": "s",
                "template_id": template["id"],
                "lists": ["members"],
                "segments": [segs["South or CAR-T"]["id"]],
            },
        )
        assert (await client.delete(f"/segments/{segs['South or CAR-T']['id']}")).status_code == 409
        assert draft.status_code == 201, draft.text
        assert (await client.delete(f"/segments/{segs['SMEs pharma biotech']['id']}")).status_code == 204
        assert (await client.get(f"/segments/{segs['SMEs pharma biotech']['id']}")).status_code == 404


BAD_RULES: list[tuple[Any, str]] = [
    ({"field": "colour", "any_of": ["red"]}, "field"),
    ({"field": "sector", "any_of": ["pharma"], "none_of": ["biotech"]}, "exactly one of any_of"),
    ({"field": "sector"}, "exactly one of any_of"),
    ({"field": "sector", "any_of": []}, "at least 1"),
    ({"field": "status", "any_of": ["sleeping"]}, "unknown status"),
    ({"field": "size_class", "all_of": ["huge"]}, "unknown size_class"),
    ({"field": "sector", "any_of": ["pharma"], "project_role": ["coordinator"]}, "project_role goes only"),
    ({"all": [], "any": [{"field": "sector", "any_of": ["x"]}]}, "at least 1"),
    ({"all": [{"field": "sector", "any_of": ["x"]}], "none": [{"field": "sector", "any_of": ["y"]}]}, "exactly one"),
    ({"field": "list", "any_of": ["no-such-list"]}, "no list"),
    ({"all": [{"all": [{"all": [{"all": [{"all": [{"field": "kind", "any_of": ["company"]}]}]}]}]}]}, "deeper"),
    ({"any": [{"field": "sector", "any_of": [f"s{i}"]} for i in range(51)]}, "at most 50"),
    ("sector = pharma", "rule"),
]


async def test_bad_rules_are_refused_and_segments_are_staff_only(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    settings = make_settings(database, kafka_bootstrap, sink)
    app = create_app(settings)
    async with service_client(app) as client:
        for rule, reason in BAD_RULES:
            for r in (
                await client.post("/segments", json={"name": "bad", "rule": rule}),
                await client.post("/segments/preview", json={"rule": rule}),
            ):
                assert r.status_code == 422, (rule, r.text)
                assert reason in r.text, (rule, r.text)
        assert (await client.get("/segments")).json()["total"] == 0  # nothing was saved

        ok = {"name": "pharma", "rule": {"field": "sector", "any_of": ["pharma"]}}
        assert (await client.post("/segments", json=ok)).status_code == 201
        assert (await client.post("/segments", json=ok)).status_code == 409  # the name is taken
        assert (await client.patch("/segments/pharma", json={"rule": {"field": "kind"}})).status_code == 422
        assert (await client.get("/segments/nope/count")).status_code == 404
        t = (
            await client.post("/templates", json={"name": "t", "subject": "s", "body_html": "h", "body_text": "t"})
        ).json()
        await setup_list(client, "news")
        r = await client.post(
            "/campaigns",
            json={"name": "c", "subject": "s", "template_id": t["id"], "lists": ["news"], "segments": ["no-such"]},
        )
        assert r.status_code == 422 and "no segment" in r.text

        # members, partners and operators are refused; only staff and admin read the audience
        for role, org_id in (("member", "o1"), ("partner", None), ("operator", None)):
            who = Principal(id=f"user:{role}", role=role, organisation_id=org_id)
            headers = identity_headers(who, "newsletter")
            for method, path in (
                ("GET", "/segments"),
                ("GET", "/segments/pharma/count"),
                ("POST", "/segments/preview"),
            ):
                r = await client.request(method, path, headers=headers, json={"rule": ok["rule"]})
                assert r.status_code == 403, (role, path, r.text)
        staff = identity_headers(Principal(id="user:staff", role="staff"), "newsletter")
        assert (await client.get("/segments/pharma/count", headers=staff)).json() == {"count": 0}


def _text(message: Any) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[no-any-return]


async def test_welcome_and_digest_lines_by_segment(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    """The welcome mail goes to the welcome segment only; each segment's digest carries only its lines."""
    await ensure_topics(kafka_bootstrap, SPEC.topics)
    settings = make_settings(
        database, kafka_bootstrap, sink, membership_url="http://127.0.0.1:9", contact_fetch_interval=3600
    )
    app = create_app(settings)
    async with service_client(app) as client, membership_api([]) as members_api:
        definitions = [
            {"name": "Biotech welcome", "rule": {"field": "sector", "any_of": ["biotech"]}, "welcome": True},
            {
                "name": "Pharma opportunities",
                "rule": {"field": "sector", "any_of": ["Pharma"]},
                "digest": True,
                "digest_sections": ["opportunity"],
            },
            {
                "name": "Biotech opportunities",
                "rule": {
                    "all": [{"field": "sector", "any_of": ["biotech"]}, {"field": "status", "any_of": ["active"]}]
                },
                "digest": True,
                "digest_sections": ["opportunity"],
            },
            # no sections chosen: every section, lines about other sectors left out
            {"name": "Devices news", "rule": {"field": "sector", "any_of": ["medical devices"]}, "digest": True},
        ]
        for body in definitions:
            r = await client.post("/segments", json=body)
            assert r.status_code == 201, r.text
            assert r.json()["welcome"] is body.get("welcome", False)
        bad = await client.post(
            "/segments", json={"name": "x", "rule": {"field": "sector", "any_of": ["a"]}, "digest_sections": ["gossip"]}
        )
        assert bad.status_code == 422 and "digest_sections" in bad.text

        # the segment events carry the automation flags
        records = await read_topic(kafka_bootstrap, topic_prefix + contracts.SEGMENT_TOPIC.name, min_count=4)
        flags = {json.loads(r.value)["name"]: json.loads(r.value) for r in records}
        assert flags["Biotech welcome"]["welcome"] is True
        assert flags["Pharma opportunities"]["digest_sections"] == ["opportunity"]

        # three organisations registered, one consenting contact each, known before they join
        people = {"c1": "o1", "c3": "o2", "c4": "o3"}
        events: list[Any] = []
        for cid, oid in people.items():
            events.append(membership.OrganisationRegistered(organisation_id=oid, profile=ORGS[oid]))
            _, email, consent, role = CONTACTS[cid]
            ref = contact(cid, oid, email, consent)
            PEOPLE[cid]["role"] = role
            events.append(membership.ContactAdded(contact_id=cid, organisation_id=oid, contact=ref))
        await publish_events(kafka_bootstrap, events)

        async def contacts_known() -> bool:
            await members_service.fetch_contact_details(app.state.ctx.context(), client=members_api)
            r = await client.get("/subscribers", params={"list": "members", "status": "confirmed"})
            return r.status_code == 200 and len(r.json()["items"]) == 3

        await wait_until(contacts_known, timeout=90, what="the three contacts on the members list")

        # they join; opportunities in several sectors and a milestone arrive
        def opportunity(oid: str, title: str, sectors: list[str]) -> matchmaking.OpportunityPublished:
            return matchmaking.OpportunityPublished(
                opportunity_id=oid, opportunity_type="partner_search", title=title, sectors=sectors
            )

        await publish_events(
            kafka_bootstrap,
            [
                *(
                    membership.OrganisationJoined(organisation_id=oid, profile=ORGS[oid], joined_on=TODAY)
                    for oid in ("o1", "o2", "o3")
                ),
                opportunity("op-p", "Clinical trial sites wanted", ["Pharma"]),
                opportunity("op-b", "CRISPR screening partner", ["biotech"]),
                opportunity("op-pb", "Sequencing for drug discovery", ["pharma", "biotech"]),
                opportunity("op-d", "Sterilisation validation", ["medical devices"]),
                projects.MilestoneReached(
                    project_id="p1",
                    milestone_id="m1",
                    number="MS3",
                    title="First-in-human study",
                    reached_on=TODAY,
                    acronym="ONCOTARGET",
                ),
            ],
        )

        # each join is handled with the organisation's profile in the audience: only the biotech
        # organisation's contact is in the welcome segment, so only that one is welcomed
        async def joined() -> bool:
            r = await client.post("/segments/preview", json={"rule": {"field": "status", "any_of": ["active"]}})
            return r.json()["total"] == 3  # type: ignore[no-any-return]

        await wait_until(joined, timeout=90, what="the three joins handled")
        async with app.state.ctx.db.read() as session:
            queued = (await session.execute(sa.text("SELECT email FROM delivery WHERE kind = 'welcome'"))).all()
        assert [r[0] for r in queued] == ["ceo@pisabiotech.example"]
        await wait_until(lambda: sink.to("ceo@pisabiotech.example"), what="the welcome mail")
        assert "Pisa Biotech" in sink.to("ceo@pisabiotech.example")[0].message["Subject"]

        async def lines_kept() -> bool:
            async with app.state.ctx.db.read() as session:
                n = (await session.execute(sa.text("SELECT count(*) FROM digest_item"))).scalar_one()
            return n == 8  # type: ignore[no-any-return]  # 3 new members, 4 opportunities, 1 milestone

        await wait_until(lines_kept, timeout=90, what="the digest lines")
        assert (await client.post("/digest")).status_code == 200
        digests = [
            c for c in (await client.get("/campaigns", params={"limit": 100})).json()["items"] if c["kind"] == "digest"
        ]
        names = {c["name"].rsplit(" — ", 1)[1]: c for c in digests}
        assert set(names) == {"Pharma opportunities", "Biotech opportunities", "Devices news"}
        for c in digests:
            assert (await client.post(f"/campaigns/{c['id']}/start")).json()["recipients"] == 1

        expected = {
            "rd@sienapharma.example": (
                "Pharma opportunities",
                {
                    "Matchmaking opportunities": [
                        "Clinical trial sites wanted — partner search",
                        "Sequencing for drug discovery — partner search",
                    ]
                },
            ),
            "ceo@pisabiotech.example": (
                "Biotech opportunities",
                {
                    "Matchmaking opportunities": [
                        "CRISPR screening partner — partner search",
                        "Sequencing for drug discovery — partner search",
                    ]
                },
            ),
            "info@firenzedevices.example": (
                "Devices news",
                {
                    "New members": ["Firenze Devices — medical devices"],
                    "Project milestones": [f"ONCOTARGET MS3: First-in-human study — reached on {TODAY.isoformat()}"],
                    "Matchmaking opportunities": ["Sterilisation validation — partner search"],
                },
            ),
        }

        def digest_mails(address: str) -> list[Any]:
            return [m for m in sink.to(address) if m.message["Subject"].startswith("Cluster digest")]

        await wait_until(lambda: all(digest_mails(a) for a in expected), timeout=60, what="the three digests")
        headings = {title for _, title in digest_service.SECTIONS}
        for address, (segment, want) in expected.items():
            mails = digest_mails(address)
            assert len(mails) == 1, address
            assert mails[0].message["Subject"] == names[segment]["name"]
            text = _text(mails[0].message)
            lines = [ln for ln in text.splitlines() if ln.strip()]
            assert lines[0] == names[segment]["name"]
            sections: dict[str, list[str]] = {}
            for ln in lines[1:]:
                if ln in headings:
                    sections[ln] = []
                elif ln.startswith("- ") and sections:
                    sections[list(sections)[-1]].append(ln[2:])
                else:
                    break  # the footer
            # the sections in the digest's order; a section's lines in any order (events on several partitions)
            assert list(sections) == list(want), (address, text)
            assert {k: sorted(v) for k, v in sections.items()} == {k: sorted(v) for k, v in want.items()}, text


async def test_segment_counts_follow_consent(database: DatabaseTarget, kafka_bootstrap: str, sink: SmtpSink) -> None:
    """The audience row follows every consent change at once: unsubscribing, leaving one list, erasure."""
    settings = make_settings(database, kafka_bootstrap, sink)
    app = create_app(settings)
    async with service_client(app) as client:
        await setup_list(client, "news")
        await setup_list(client, "events")
        a = await add_subscriber(client, "a@example.org", ["news"], interests=["biotech"])
        b = await add_subscriber(client, "b@example.org", ["news", "events"], interests=["biotech"])
        c = await add_subscriber(client, "c@example.org", ["events"], interests=["pharma"])
        biotech = {"rule": {"field": "interest", "any_of": ["biotech"]}}

        async def members() -> set[str]:
            r = await client.post("/segments/preview", json=biotech)
            assert r.status_code == 200, r.text
            assert r.json()["total"] == len(r.json()["items"])
            return {m["email"] for m in r.json()["items"]}

        assert await members() == {"a@example.org", "b@example.org"}
        # a unsubscribes with the one-click link: no recorded consent left, out of every segment
        token = links.links_for(settings, a["id"])["unsubscribe_token"]
        r = await client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200, r.text
        assert await members() == {"b@example.org"}
        # b leaves one list but stays confirmed on the other: still in
        prefs = links.links_for(settings, b["id"])["preferences_url"].split("/preferences", 1)[1]
        r = await client.post(f"/preferences{prefs}", json={"lists": ["events"], "interests": ["biotech"]})
        assert r.status_code == 200, r.text
        assert await members() == {"b@example.org"}
        # c's interests change: in
        r = await client.patch(f"/subscribers/{c['id']}", json={"interests": ["biotech", "pharma"]})
        assert r.status_code == 200, r.text
        assert await members() == {"b@example.org", "c@example.org"}
        # b is erased: gone, and its audience row with it
        assert (await client.delete(f"/subscribers/{b['id']}")).status_code == 204
        assert await members() == {"c@example.org"}
        async with app.state.ctx.db.read() as session:
            rows = (
                await session.execute(sa.text("SELECT subscriber_id, consenting FROM audience_member ORDER BY 1"))
            ).all()
        assert sorted((r[0], bool(r[1])) for r in rows) == sorted([(hex_id(a["id"]), False), (hex_id(c["id"]), True)])
