"""Ids in one form (docs/api-conventions.md, "Ids"): answered as dashed UUIDs, taken in either form.

The partners service keeps storing the 32-hex form (the partner id names its Kafka user; the API key id
is the one its caller's principal carries): a dashed and a 32-hex id find the same row, and anything
else is an unknown id, answered in the shared error shape.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from distretto_dev.testing import DatabaseTarget, identity_headers, service_client
from distretto_shared.identity import Principal, Role
from partners.app import create_app

from .conftest import ORG_TYPES, make_settings

DASHED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _is_error(body: Any, code: str) -> bool:
    return isinstance(body, dict) and body.get("error") == code and set(body) == {"error", "message", "details"}


async def test_a_dashed_and_a_hex_id_find_the_same_partner_and_endpoint(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    key = uuid.uuid4()
    app = create_app(make_settings(database, kafka_bootstrap))
    async with service_client(app) as client:
        # the console gives the gateway's answer (dashed) as the partner's API key id
        created = await client.post(
            "/partners", json={"name": "Agency", "event_types": ORG_TYPES, "api_key_id": str(key)}
        )
        assert created.status_code == 201, created.text
        partner = created.json()
        assert partner.pop("kafka") is None
        assert DASHED.match(partner["id"]) and partner["api_key_id"] == str(key)
        pid = uuid.UUID(partner["id"])
        for form in (str(pid), pid.hex, pid.hex.upper()):
            found = await client.get(f"/partners/{form}")
            assert found.status_code == 200 and found.json() == partner, form
        assert (await client.get("/partners")).json()["items"] == [partner]
        # the key's caller (its principal carries the 32-hex form) is the partner
        caller = identity_headers(Principal(id=f"apikey:{key.hex}", role=Role.PARTNER), "partners")
        wrong_type = await client.get("/stream?types=distretto.public.project.registered.v1", headers=caller)
        assert wrong_type.status_code == 403 and "Not granted" in wrong_type.text
        # the same key given in the 32-hex form is the same key
        again = await client.post("/partners", json={"name": "Other", "event_types": ORG_TYPES, "api_key_id": key.hex})
        assert again.status_code == 409, again.text

        renamed = await client.patch(f"/partners/{pid.hex}", json={"name": "Agency Srl"})
        assert renamed.status_code == 200 and renamed.json()["id"] == str(pid)
        endpoint = await client.post(f"/partners/{pid}/webhooks", json={"url": "http://127.0.0.1:9/hook"})
        assert endpoint.status_code == 201, endpoint.text
        eid = uuid.UUID(endpoint.json()["id"])
        assert endpoint.json()["id"] == str(eid) and endpoint.json()["partner_id"] == str(pid)
        for form in (str(eid), eid.hex):
            shown = await client.get(f"/webhooks/{form}")
            assert shown.status_code == 200 and shown.json()["id"] == str(eid), form
            listed = await client.get(f"/webhooks/{form}/messages")
            assert listed.status_code == 200 and listed.json()["items"] == [], form
        assert [e["id"] for e in (await client.get(f"/partners/{pid.hex}/webhooks")).json()] == [str(eid)]
        disabled = await client.post(f"/webhooks/{eid.hex}/disable")
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        # an unknown public event, named in either form, is not found
        for event_id in (str(uuid.uuid4()), uuid.uuid4().hex):
            replay = await client.post(f"/webhooks/{eid}/replay", json={"event_id": event_id})
            assert replay.status_code == 404 and _is_error(replay.json(), "not_found"), event_id


async def test_a_malformed_or_unknown_id_is_not_found_in_the_shared_shape(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap))
    async with service_client(app) as client:
        for bad in ("not-an-id", "0" * 31, "g" * 32, "x" * 200, str(uuid.uuid4()), "%20"):
            for method, path in (
                ("GET", f"/partners/{bad}"),
                ("PATCH", f"/partners/{bad}"),
                ("GET", f"/partners/{bad}/webhooks"),
                ("GET", f"/webhooks/{bad}"),
                ("POST", f"/webhooks/{bad}/enable"),
                ("GET", f"/webhooks/{bad}/attempts"),
            ):
                body = {"name": "X"} if method == "PATCH" else None
                answer = await client.request(method, path, json=body)
                assert answer.status_code == 404 and _is_error(answer.json(), "not_found"), (method, path, answer.text)
        too_long = await client.post("/partners", json={"name": "A", "event_types": ORG_TYPES, "api_key_id": "k" * 65})
        assert too_long.status_code == 422 and _is_error(too_long.json(), "validation_error")
        not_text = await client.post("/partners", json={"name": "A", "event_types": ORG_TYPES, "api_key_id": 7})
        assert not_text.status_code == 422 and _is_error(not_text.json(), "validation_error")
