"""Routes against a real database (SQLite and PostgreSQL) and a real broker."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import httpx

from distretto_dev.testing import headers_of, publish_events, read_topic, service_client, wait_for
from distretto_shared.contracts import matchmaking as contracts
from distretto_shared.contracts import membership
from distretto_shared.topics import ensure_topics
from matchmaking.app import create_app
from matchmaking.config import Settings
from matchmaking.opportunities.service import expire_due

REQUEST = {
    "opportunity_type": "technology_request",
    "title": "Wanted: automated GMP process for CAR-T cell manufacturing",
    "summary": "A hospital cell factory looks for a closed bioreactor process to manufacture CAR-T cells.",
    "keywords": ["CAR-T", "GMP manufacturing"],
    "technology_fields": ["cell therapy"],
    "market_fields": ["oncology"],
    "sectors": ["biotech"],
    "owner_organisation_id": "5a1e0c3d-2f4b-4e6a-9c8d-7b6a5f4e3d2c",  # a hospital
}


async def test_writes_that_fill_the_bm25_delta_have_it_merged_by_the_merge_task(
    settings: Settings, publish: Any
) -> None:
    """A delta the writes filled is merged long before the periodic merge: the engine asks the
    service's merge task instead of merging in the writing request (test_ranking checks the asking)."""
    settings = settings.model_copy(update={"delta_merge_threshold": 3, "merge_interval": 3600.0})
    async with service_client(create_app(settings)) as client:
        for n in range(3):
            await publish(client, title=f"Closed-system bioreactor for CAR-T cells, batch {n}")

        async def merged() -> dict[str, Any] | None:
            stats = (await client.get("/index")).json()
            return stats if stats["bm25_delta_rows"] == 0 else None

        stats = await wait_for(merged, what="the BM25 delta merged by the merge task")
        assert stats["opportunities"] == 3 and stats["bm25_main_rows"] >= 3  # in the built index


async def test_ranking_filters_and_the_match_lifecycle(
    settings: Settings, topic_prefix: str, publish: Any, payload: Any
) -> None:
    async with service_client(create_app(settings)) as client:
        offer = await publish(client)
        request = await publish(client, **REQUEST)
        await publish(
            client,
            **{
                **REQUEST,
                "title": "Wanted: olive leaf polyphenol extracts for supplements",
                "keywords": ["olive"],
                "summary": "A nutraceutical firm looks for polyphenol extracts.",
                "sectors": ["nutraceutics"],
                "owner_organisation_id": str(uuid.uuid4()),
            },
        )
        # Same text as the request but the wrong type (business request): never paired with a technology offer.
        await publish(
            client, **{**REQUEST, "opportunity_type": "business_request", "owner_organisation_id": str(uuid.uuid4())}
        )
        # The offer's owner's own request is never its counterpart.
        await publish(client, **{**REQUEST, "owner_organisation_id": offer["owner_organisation_id"]})

        page = (
            await client.get(f"/opportunities/{offer['id']}/counterparts", params={"target": "opportunities"})
        ).json()
        assert page["total"] == 2
        first = page["items"][0]
        assert first["counterpart_id"] == request["id"]
        assert set(first["score_parts"]) == {"bm25", "bm25_normalised", "dense", "fused", "feedback"}
        assert first["score_parts"]["bm25"] > 0 and first["score_parts"]["dense"] > 0.5
        assert first["score"] > page["items"][1]["score"]
        assert "car" in first["explanation"]["matched_fields"]["title"]
        assert first["explanation"]["shared_keywords"] == ["car-t", "gmp manufacturing"]

        filtered = await client.get(
            f"/opportunities/{offer['id']}/counterparts", params={"target": "opportunities", "sector": "nutraceutics"}
        )
        assert [i["title"] for i in filtered.json()["items"]] == [
            "Wanted: olive leaf polyphenol extracts for supplements"
        ]
        paged = await client.get(
            f"/opportunities/{offer['id']}/counterparts", params={"target": "opportunities", "limit": 1, "offset": 1}
        )
        assert paged.json()["items"][0]["counterpart_id"] == page["items"][1]["counterpart_id"]

        match = await client.post(
            "/matches",
            json={"opportunity_id": offer["id"], "counterpart_type": "opportunity", "counterpart_id": request["id"]},
        )
        assert match.status_code == 201, match.text
        m = match.json()
        assert m["state"] == "proposed" and m["score"] == first["score"]
        assert m["explanation"]["summary"].startswith("Matched on")
        again = await client.post(
            "/matches",
            json={"opportunity_id": offer["id"], "counterpart_type": "opportunity", "counterpart_id": request["id"]},
        )
        assert again.status_code == 409

        mid = m["id"]
        assert (
            await client.post(f"/matches/{mid}/meeting", json={"scheduled_at": "2030-05-01T10:00:00Z"})
        ).status_code == 409
        r = await client.post(f"/matches/{mid}/accept", json={"side": "opportunity"})
        assert r.json()["state"] == "proposed" and r.json()["opportunity_side"] == "accepted"
        assert (await client.post(f"/matches/{mid}/accept", json={"side": "opportunity"})).status_code == 409
        r = await client.post(f"/matches/{mid}/accept", json={"side": "counterpart"})
        assert r.json()["state"] == "accepted"
        assert (await client.post(f"/matches/{mid}/meeting/held", json={})).status_code == 409
        r = await client.post(f"/matches/{mid}/meeting", json={"scheduled_at": "2030-05-01T10:00:00+02:00"})
        assert r.json()["state"] == "meeting_scheduled"
        r = await client.post(f"/matches/{mid}/meeting/held", json={})
        assert r.json()["state"] == "meeting_held"
        conflict = await client.post(f"/matches/{mid}/decline", json={"side": "counterpart"})
        assert conflict.status_code == 409 and "meeting_held" in conflict.json()["message"]

        # A call for matches proposes new counterparts only, and is idempotent.
        proposed = (await client.post(f"/opportunities/{offer['id']}/matches", json={"limit": 3})).json()
        assert request["id"] not in [p["counterpart_id"] for p in proposed]
        assert (
            await client.post(f"/opportunities/{offer['id']}/matches", json={"limit": 3, "target": "opportunities"})
        ).json() == []

        held = (await client.get("/matches", params={"state": "meeting_held"})).json()
        assert held["total"] == 1 and held["items"][0]["id"] == mid
        metrics = (await client.get("/metrics")).text
        assert 'distretto_matchmaking_matches{state="meeting_held"} 1.0' in metrics
        assert 'distretto_matchmaking_index_documents{kind="opportunity"} 5.0' in metrics
        assert "distretto_matchmaking_query_duration_seconds_count" in metrics

        records = await read_topic(
            settings.kafka_bootstrap_servers, topic_prefix + contracts.MATCH_TOPIC.name, min_count=6
        )
        types = [headers_of(r)["ce_type"] for r in records if headers_of(r)["ce_subject"] == uuid.UUID(mid).hex]
        assert types == [
            contracts.MatchProposed.event_type,
            contracts.MatchAccepted.event_type,
            contracts.MatchAccepted.event_type,
            contracts.MeetingScheduled.event_type,
            contracts.MeetingHeld.event_type,
        ]


async def test_feedback_changes_a_later_ranking(settings: Settings, publish: Any, payload: Any) -> None:
    async with service_client(create_app(settings)) as client:
        offer = await publish(client)
        a = await publish(client, **REQUEST)
        b = await publish(
            client,
            **{
                **REQUEST,
                "owner_organisation_id": str(uuid.uuid4()),
                "title": "Wanted: GMP manufacturing process for T cell therapy",
                "summary": "A cell factory looks for a closed process to manufacture engineered T cells.",
            },
        )
        url = f"/opportunities/{offer['id']}/counterparts"
        before = [i["counterpart_id"] for i in (await client.get(url)).json()["items"]]
        assert before[:2] == [a["id"], b["id"]]
        ma = await client.post(
            "/matches",
            json={"opportunity_id": offer["id"], "counterpart_type": "opportunity", "counterpart_id": a["id"]},
        )
        mb = await client.post(
            "/matches",
            json={"opportunity_id": offer["id"], "counterpart_type": "opportunity", "counterpart_id": b["id"]},
        )
        await client.post(f"/matches/{ma.json()['id']}/feedback", json={"side": "opportunity", "useful": False})
        r = await client.post(f"/matches/{mb.json()['id']}/feedback", json={"side": "opportunity", "useful": True})
        assert r.json()["feedback"] == {"opportunity": True}
        after = (await client.get(url)).json()["items"]
        assert [i["counterpart_id"] for i in after][:2] == [b["id"], a["id"]]
        assert after[0]["score_parts"]["feedback"] > 0 > after[1]["score_parts"]["feedback"]
        # Changing one's mind undoes the vote.
        await client.post(f"/matches/{ma.json()['id']}/feedback", json={"side": "opportunity", "useful": True})
        await client.post(f"/matches/{mb.json()['id']}/feedback", json={"side": "opportunity", "useful": True})
        again = [i["counterpart_id"] for i in (await client.get(url)).json()["items"]]
        assert again[:2] == [a["id"], b["id"]]


PII_SUMMARY = (
    "Alpha Biotech S.r.l. offers its patented process (patent EP 3 456 789 B1). Contact Dr. Maria Rossi, "
    "maria.rossi@alphabio.it, tel. +39 055 123 4567, www.alphabio.it."
)


async def test_public_view_is_anonymised(settings: Settings, publish: Any, payload: Any) -> None:
    async with service_client(create_app(settings)) as client:
        o = await publish(
            client,
            summary=PII_SUMMARY,
            title="CAR-T process by Alpha Biotech S.r.l.",
            keywords=["CAR-T", "info@alphabio.it"],
            reference="TOIT-PII-1",
        )
        own = (await client.get(f"/opportunities/{o['id']}")).json()
        assert "Maria Rossi" in own["summary"]  # the owner sees the original
        public = (await client.get(f"/public/opportunities/{o['id']}")).json()
        listed = (await client.get("/public/opportunities")).json()
        assert listed["total"] == 1 and listed["items"][0] == public
        text = str(public)
        for secret in (
            "Alpha Biotech",
            "S.r.l",
            "Maria",
            "Rossi",
            "@",
            "alphabio",
            "055",
            "3 456 789",
            o["owner_organisation_id"],
            "TOIT",
        ):
            assert secret not in text, secret
        assert "owner_organisation_id" not in public and "reference" not in public
        assert public["keywords"] == ["CAR-T"]
        assert "patented process" in public["summary"]


async def test_expiry_and_renewal(settings: Settings, topic_prefix: str, publish: Any, payload: Any) -> None:
    app = create_app(settings)
    async with service_client(app) as client:
        tomorrow = date.today() + timedelta(days=1)
        offer = await publish(client, expires_on=tomorrow.isoformat())
        request = await publish(client, **REQUEST)
        url = f"/opportunities/{request['id']}/counterparts"
        assert [i["counterpart_id"] for i in (await client.get(url)).json()["items"]][:1] == [offer["id"]]

        expired = await expire_due(app.state.ctx.context(), on=tomorrow + timedelta(days=1))
        assert expired == [uuid.UUID(offer["id"]).hex]  # the stored (and event) form
        assert (await client.get(f"/opportunities/{offer['id']}")).json()["status"] == "expired"
        assert offer["id"] not in [i["counterpart_id"] for i in (await client.get(url)).json()["items"]]
        assert offer["id"] in [
            i["counterpart_id"] for i in (await client.get(url, params={"include_expired": "true"})).json()["items"]
        ]
        assert (await client.get(f"/public/opportunities/{offer['id']}")).status_code == 404
        blocked = await client.post(
            "/matches",
            json={"opportunity_id": offer["id"], "counterpart_type": "opportunity", "counterpart_id": request["id"]},
        )
        assert blocked.status_code == 409

        renewed = await client.post(f"/opportunities/{offer['id']}/renew", json={"months": 6})
        assert renewed.status_code == 200 and renewed.json()["status"] == "active" and renewed.json()["renewals"] == 1
        assert offer["id"] in [i["counterpart_id"] for i in (await client.get(url)).json()["items"]]

        records = await read_topic(
            settings.kafka_bootstrap_servers, topic_prefix + contracts.OPPORTUNITY_TOPIC.name, min_count=4
        )
        mine = [headers_of(r)["ce_type"] for r in records if headers_of(r)["ce_subject"] == uuid.UUID(offer["id"]).hex]
        assert mine == [
            contracts.OpportunityPublished.event_type,
            contracts.OpportunityExpired.event_type,
            contracts.OpportunityRenewed.event_type,
        ]


async def test_the_owner_withdraws_an_opportunity(
    settings: Settings, topic_prefix: str, publish: Any, payload: Any
) -> None:
    app = create_app(settings)
    async with service_client(app) as client:
        offer = await publish(client)
        request = await publish(client, **REQUEST)
        url = f"/opportunities/{request['id']}/counterparts"
        assert offer["id"] in [i["counterpart_id"] for i in (await client.get(url)).json()["items"]]

        withdrawn = await client.post(f"/opportunities/{offer['id']}/withdraw")
        assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
        assert (await client.get(f"/public/opportunities/{offer['id']}")).status_code == 404
        assert offer["id"] not in [i["counterpart_id"] for i in (await client.get(url)).json()["items"]]
        again = await client.post(f"/opportunities/{offer['id']}/withdraw")
        assert again.status_code == 409 and "withdrawn" in again.json()["message"]
        renew = await client.post(f"/opportunities/{offer['id']}/renew", json={"months": 6})
        assert renew.status_code == 409
        assert (await client.post("/opportunities/no-such-one/withdraw")).status_code == 404

        records = await read_topic(
            settings.kafka_bootstrap_servers, topic_prefix + contracts.OPPORTUNITY_TOPIC.name, min_count=3
        )
        mine = [headers_of(r)["ce_type"] for r in records if headers_of(r)["ce_subject"] == uuid.UUID(offer["id"]).hex]
        assert mine == [contracts.OpportunityPublished.event_type, contracts.OpportunityWithdrawn.event_type]


async def _assert_nothing_written(client: httpx.AsyncClient) -> None:
    assert (await client.get("/opportunities")).json()["total"] == 1
    assert (await client.get("/matches")).json()["total"] == 0


async def test_bad_input_gets_a_clear_4xx_and_writes_nothing(settings: Settings, publish: Any, payload: Any) -> None:
    async with service_client(create_app(settings)) as client:
        good = await publish(client, reference="TOIT-1")
        past = (date.today() - timedelta(days=1)).isoformat()
        bad_creates = [
            payload(opportunity_type="job_offer"),
            payload(title="x"),
            payload(country="Italy"),
            payload(sectors=["Bio Tech!"]),
            payload(keywords=[""]),
            payload(unknown_field=1),
            payload(expires_on=past),
            payload(opportunity_type="partner_search"),
            payload(opportunity_type="partner_search", topic_code="HORIZON-HLTH-2025-01", role_sought="boss"),
            payload(topic_code="HORIZON-HLTH-2025-01"),
            payload(
                opportunity_type="partner_search",
                topic_code="HORIZON-HLTH-2025-01",
                role_sought="partner",
                deadline=past,
            ),
            payload(reference="TOIT-1"),
            {"title": "missing everything else"},
        ]
        for body in bad_creates:
            r = await client.post("/opportunities", json=body)
            assert r.status_code in (409, 422), (body, r.status_code)
            assert r.json()["message"], body
        # An owner is membership's organisation id (a UUID, answered as format uuid), nothing else.
        for owner in ("org-owner", good["owner_organisation_id"] + "0", ""):
            r = await client.post("/opportunities", json=payload(owner_organisation_id=owner))
            assert r.status_code == 422, (owner, r.text)
            assert [d["loc"] for d in r.json()["details"]] == [["body", "owner_organisation_id"]], r.text
        r = await client.post("/opportunities", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["message"]

        oid = good["id"]
        bad_requests = [
            ("PATCH", f"/opportunities/{oid}", {}, 422),
            ("PATCH", f"/opportunities/{oid}", {"topic_code": "HORIZON-X"}, 422),
            ("PATCH", f"/opportunities/{oid}", {"title": ""}, 422),
            ("PATCH", "/opportunities/nope", {"title": "A valid title"}, 404),
            ("POST", f"/opportunities/{oid}/renew", {}, 422),
            ("POST", f"/opportunities/{oid}/renew", {"expires_on": past}, 422),
            ("POST", f"/opportunities/{oid}/renew", {"months": 99}, 422),
            ("POST", "/opportunities/nope/renew", {"months": 1}, 404),
            ("POST", f"/opportunities/{oid}/matches", {"limit": 0}, 422),
            ("POST", "/opportunities/nope/matches", {}, 404),
            ("POST", "/matches", {"opportunity_id": oid, "counterpart_type": "person", "counterpart_id": "x"}, 422),
            (
                "POST",
                "/matches",
                {"opportunity_id": oid, "counterpart_type": "opportunity", "counterpart_id": "x"},
                422,
            ),
            ("POST", "/matches", {"opportunity_id": "nope", "counterpart_type": "profile", "counterpart_id": "x"}, 404),
            ("POST", "/matches/nope/accept", {"side": "opportunity"}, 404),
            ("POST", "/matches/nope/accept", {"side": "both"}, 422),
            ("POST", "/matches/nope/meeting", {"scheduled_at": "2030-01-01T10:00:00"}, 422),
            ("POST", "/matches/nope/feedback", {"side": "opportunity", "useful": "maybe"}, 422),
            ("POST", "/matches/nope/feedback", {"side": "opportunity", "useful": True}, 404),
        ]
        for method, url, body, status in bad_requests:
            r = await client.request(method, url, json=body)
            assert r.status_code == status, (method, url, body, r.status_code, r.text)
            assert r.json()["message"]
        bad_queries = [
            (f"/opportunities/{oid}/counterparts", {"limit": 0}, 422),
            (f"/opportunities/{oid}/counterparts", {"target": "everyone"}, 422),
            (f"/opportunities/{oid}/counterparts", {"country": "ITA"}, 422),
            (f"/opportunities/{oid}/counterparts", {"kind": "martian"}, 422),
            ("/opportunities/nope/counterparts", {}, 404),
            ("/opportunities", {"opportunity_type": "nope"}, 422),
            ("/opportunities", {"offset": -1}, 422),
            ("/organisations/nope/opportunities", {}, 404),
            ("/organisations/nope", {}, 404),
            ("/matches", {"state": "married"}, 422),
            ("/public/opportunities/nope", {}, 404),
        ]
        for url, params, status in bad_queries:
            r = await client.get(url, params=params)
            assert r.status_code == status, (url, params, r.status_code, r.text)
            assert r.json()["message"]
        await _assert_nothing_written(client)
        assert (await client.get(f"/opportunities/{oid}")).json() == good


async def test_partner_search_finds_profiles_only_and_lists_paginate(
    settings: Settings, publish: Any, payload: Any
) -> None:
    async with service_client(create_app(settings)) as client:
        ps = await publish(
            client,
            opportunity_type="partner_search",
            title="Partner search: AI for early detection of cerebral palsy in infants",
            topic_code="HORIZON-HLTH-2025-DISEASE-03",
            role_sought="partner",
            deadline=(date.today() + timedelta(days=60)).isoformat(),
        )
        assert ps["topic_code"] == "HORIZON-HLTH-2025-DISEASE-03" and ps["role_sought"] == "partner"
        for i in range(3):
            await publish(client, **{**REQUEST, "reference": f"TR-{i}"})
        # Partner searches are answered by profiles, never by opportunities.
        r = await client.get(f"/opportunities/{ps['id']}/counterparts", params={"target": "opportunities"})
        assert r.status_code == 200 and r.json()["total"] == 0
        page = (await client.get("/opportunities", params={"limit": 2, "offset": 1})).json()
        assert page["total"] == 4 and len(page["items"]) == 2 and page["limit"] == 2 and page["offset"] == 1
        only = (await client.get("/opportunities", params={"opportunity_type": "partner_search"})).json()
        assert [o["id"] for o in only["items"]] == [ps["id"]]
        by_ref = (await client.get("/opportunities", params={"reference": "TR-1"})).json()
        assert by_ref["total"] == 1
        patched = await client.patch(f"/opportunities/{ps['id']}", json={"role_sought": "coordinator"})
        assert patched.status_code == 200 and patched.json()["role_sought"] == "coordinator"


async def test_a_change_to_null_of_a_field_every_opportunity_has_is_refused(settings: Settings, publish: Any) -> None:
    """The title, summary and term lists may be left out of a change, not set to null (it was a 500)."""
    async with service_client(create_app(settings)) as client:
        offer = await publish(client)
        for field in ("title", "summary", "keywords", "technology_fields", "market_fields", "sectors"):
            refused = await client.patch(f"/opportunities/{offer['id']}", json={field: None})
            assert refused.status_code == 422, (field, refused.text)
            assert refused.json()["error"] == "validation_error" and field in refused.text
        assert (await client.get(f"/opportunities/{offer['id']}")).json() == offer
        changed = await client.patch(f"/opportunities/{offer['id']}", json={"title": "A new title for the offer"})
        assert changed.status_code == 200 and changed.json()["summary"] == offer["summary"]
        schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["OpportunityUpdate"]
        assert schema["properties"]["title"].get("type") == "string", schema["properties"]["title"]


async def test_ids_are_answered_dashed_and_taken_in_either_form(
    settings: Settings, kafka_bootstrap: str, publish: Any
) -> None:
    """docs/api-conventions.md, "Ids": every id answered as a dashed UUID; a path, query or body id
    given dashed, 32-hex or upper-case finds the same record (ids stored or carried in events before stay valid)."""
    owner, other = uuid.uuid4(), uuid.uuid4()
    await ensure_topics(kafka_bootstrap, [membership.ORGANISATION_TOPIC])
    async with service_client(create_app(settings)) as client:
        offer = await publish(client, owner_organisation_id=owner.hex)
        request = await publish(client, **{**REQUEST, "owner_organisation_id": str(other)})
        assert offer["id"] == str(uuid.UUID(offer["id"])) and offer["owner_organisation_id"] == str(owner)
        offer_hex = uuid.UUID(offer["id"]).hex
        for form in (offer["id"], offer_hex, offer["id"].upper()):
            r = await client.get(f"/opportunities/{form}")
            assert r.status_code == 200 and r.json()["id"] == offer["id"], (form, r.text)
        public = await client.get(f"/public/opportunities/{offer_hex}")
        assert public.json()["id"] == offer["id"]
        mine = await client.get("/opportunities", params={"owner_organisation_id": owner.hex})
        assert [o["id"] for o in mine.json()["items"]] == [offer["id"]]
        ranked = await client.get(f"/opportunities/{offer_hex}/counterparts", params={"target": "opportunities"})
        assert [i["counterpart_id"] for i in ranked.json()["items"]] == [request["id"]]

        made = await client.post(
            "/matches",
            json={"opportunity_id": offer_hex, "counterpart_type": "opportunity", "counterpart_id": request["id"]},
        )
        assert made.status_code == 201, made.text
        match = made.json()
        assert match["id"] == str(uuid.UUID(match["id"]))
        assert (match["opportunity_id"], match["counterpart_id"]) == (offer["id"], request["id"])
        assert (await client.get(f"/matches/{uuid.UUID(match['id']).hex}")).json()["id"] == match["id"]
        for params in (
            {"opportunity_id": offer_hex},
            {"opportunity_id": offer["id"]},
            {"counterpart_id": uuid.UUID(request["id"]).hex},
            {"counterpart_id": request["id"]},
        ):
            listed = await client.get("/matches", params=params)
            assert [m["id"] for m in listed.json()["items"]] == [match["id"]], params
        again = await client.post(
            "/matches",
            json={
                "opportunity_id": offer["id"],
                "counterpart_type": "opportunity",
                "counterpart_id": uuid.UUID(request["id"]).hex,
            },
        )
        assert again.status_code == 409  # the same pair, whatever the form
        assert (await client.get(f"/opportunities/{uuid.uuid4()}")).status_code == 404
        assert (await client.get(f"/matches/{uuid.uuid4().hex}")).status_code == 404

        # An organisation's profile (kept dashed, as membership's events carry it) by either form.
        org = membership.OrganisationProfile(
            organisation_id=owner.hex, name="Tuscan Cell Factory", kind="company", description="Cell therapy."
        )
        await publish_events(
            kafka_bootstrap, [membership.OrganisationRegistered(organisation_id=owner.hex, profile=org)]
        )

        async def profile() -> Any:
            r = await client.get(f"/organisations/{owner.hex}")
            return r.json() if r.status_code == 200 else None

        found = await wait_for(profile, what="organisation registered")
        assert found["organisation_id"] == str(owner)
        assert (await client.get(f"/organisations/{owner}")).json()["organisation_id"] == str(owner)
