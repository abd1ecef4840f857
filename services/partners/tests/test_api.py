"""Partner and webhook-endpoint administration: who may, what is checked, secrets shown once."""

from __future__ import annotations

from distretto_dev.testing import DatabaseTarget, identity_headers, service_client
from distretto_shared.identity import Principal, Role
from partners.app import create_app

from .conftest import ORG_TYPES, PARTNER, make_settings

STAFF = Principal(id="user:staff", role=Role.STAFF)


async def test_admin_creates_partners_and_endpoints_others_are_refused(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap))
    async with service_client(app) as client:
        created = await client.post("/partners", json={"name": "Agency", "event_types": ORG_TYPES, "api_key_id": "k1"})
        assert created.status_code == 201, created.text
        partner = created.json()
        assert partner["event_types"] == sorted(ORG_TYPES)
        for who in (STAFF, PARTNER, Principal(id="user:m", role=Role.MEMBER, organisation_id="o")):
            refused = await client.get("/partners", headers=identity_headers(who, "partners"))
            assert refused.status_code == 403, who
        again = await client.post("/partners", json={"name": "Other", "event_types": ORG_TYPES, "api_key_id": "k1"})
        assert again.status_code == 409
        bad = await client.post(
            "/partners", json={"name": "X", "event_types": ["distretto.membership.contact.added.v2"]}
        )
        assert bad.status_code == 422 and "unknown public event types" in bad.text
        empty = await client.post("/partners", json={"name": "X", "event_types": []})
        assert empty.status_code == 422
        no_credential = await client.get("/partners", headers={"X-Distretto-Identity": "forged"})
        assert no_credential.status_code == 401

        pid = partner["id"]
        endpoint = await client.post(f"/partners/{pid}/webhooks", json={"url": "http://127.0.0.1:9/hook"})
        assert endpoint.status_code == 201, endpoint.text
        body = endpoint.json()
        assert body["secret"].startswith("whsec_")
        shown = await client.get(f"/webhooks/{body['id']}")
        assert shown.status_code == 200 and "secret" not in shown.json()
        listed = await client.get(f"/partners/{pid}/webhooks")
        assert [e["id"] for e in listed.json()] == [body["id"]] and "secret" not in listed.json()[0]
        rotated = (await client.post(f"/webhooks/{body['id']}/rotate-secret")).json()
        assert rotated["secret"] != body["secret"] and rotated["previous_secret_until"] is not None
        outside = await client.post(
            f"/partners/{pid}/webhooks",
            json={"url": "http://127.0.0.1:9/x", "event_types": ["distretto.public.project.registered.v1"]},
        )
        assert outside.status_code == 422 and "may not receive" in outside.text
        for url in ("ftp://x.example/a", "not a url", "http://user:pw@x.example/a"):
            assert (await client.post(f"/partners/{pid}/webhooks", json={"url": url})).status_code == 422, url
        assert (await client.post("/partners/nope/webhooks", json={"url": "http://127.0.0.1:9/x"})).status_code == 404
        replay = await client.post(f"/webhooks/{body['id']}/replay", json={})
        assert replay.status_code == 422
        unknown_event = await client.post(f"/webhooks/{body['id']}/replay", json={"event_id": "nope"})
        assert unknown_event.status_code == 404
        patched = await client.patch(f"/partners/{pid}", json={"active": False})
        assert patched.status_code == 200 and patched.json()["active"] is False


async def test_https_is_required_by_default(database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, webhook_require_https=True))
    async with service_client(app) as client:
        pid = (await client.post("/partners", json={"name": "A", "event_types": ORG_TYPES})).json()["id"]
        plain = await client.post(f"/partners/{pid}/webhooks", json={"url": "http://receiver.example/hook"})
        assert plain.status_code == 422 and "https" in plain.text
        tls = await client.post(f"/partners/{pid}/webhooks", json={"url": "https://receiver.example/hook"})
        assert tls.status_code == 201


async def test_the_stream_refuses_callers_that_are_not_active_partners(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap))
    async with service_client(app) as client:
        assert (await client.get("/stream")).status_code == 403  # an admin is not a partner system
        unknown = Principal(id="apikey:nobody", role=Role.PARTNER)
        assert (await client.get("/stream", headers=identity_headers(unknown, "partners"))).status_code == 403
        await client.post("/partners", json={"name": "A", "event_types": ORG_TYPES, "api_key_id": "key-agency"})
        as_partner = identity_headers(PARTNER, "partners")
        wrong = await client.get("/stream?types=distretto.public.project.registered.v1", headers=as_partner)
        assert wrong.status_code == 403 and "Not granted" in wrong.text
        unknown_type = await client.get("/stream?types=nope", headers=as_partner)
        assert unknown_type.status_code == 422
        bad_position = await client.get("/stream", headers={**as_partner, "Last-Event-ID": "abc"})
        assert bad_position.status_code == 422
