"""Ids in one form (docs/api-conventions.md, "Ids"): users and API keys answered with dashed UUIDs,
found by either form; a malformed id is an unknown one, answered in the shared error shape.

The gateway keeps storing the 32-hex form: a user's id is the subject of every token it issued and an
API key's id the principal its callers carry, which services have recorded (``created_by``, a partner's
``api_key_id``).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from distretto_dev.testing import DatabaseTarget

from .conftest import Upstreams, admin_headers, gateway_settings, running_gateway

DASHED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ORGANISATION = uuid.uuid4()


def _is_error(body: Any, code: str) -> bool:
    return isinstance(body, dict) and body.get("error") == code and set(body) == {"error", "message", "details"}


async def test_users_and_api_keys_are_found_by_either_form(database: DatabaseTarget, upstreams: Upstreams) -> None:
    async with running_gateway(gateway_settings(database, upstreams)) as client:
        admin = await admin_headers(client)
        created = await client.post(
            "/auth/users",
            # an organisation id given in the 32-hex form is kept in the form membership answers
            json={
                "email": "ids@gateway.test",
                "password": "ids-password-1234",
                "role": "member",
                "organisation_id": ORGANISATION.hex,
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        user = created.json()
        assert DASHED.match(user["id"]) and user["organisation_id"] == str(ORGANISATION)
        uid = uuid.UUID(user["id"])
        for form in (str(uid), uid.hex, uid.hex.upper()):
            found = await client.get(f"/auth/users/{form}", headers=admin)
            assert found.status_code == 200 and found.json() == user, form
        listed = (await client.get("/auth/users", params={"role": "member"}, headers=admin)).json()["items"]
        assert [u["id"] for u in listed] == [str(uid)]
        disabled = await client.patch(f"/auth/users/{uid.hex}", json={"active": False}, headers=admin)
        assert disabled.status_code == 200 and disabled.json()["id"] == str(uid) and not disabled.json()["active"]
        enabled = await client.patch(f"/auth/users/{uid}", json={"active": True}, headers=admin)
        assert enabled.status_code == 200 and enabled.json()["active"]

        issued = await client.post(
            "/auth/api-keys", json={"name": "agency", "scopes": ["/auth/me"], "expires_in_days": 5}, headers=admin
        )
        assert issued.status_code == 201, issued.text
        kid = uuid.UUID(issued.json()["id"])
        assert issued.json()["id"] == str(kid)
        as_key = {"X-API-Key": issued.json()["key"]}
        me = await client.get("/auth/me", headers=as_key)
        assert me.status_code == 200 and me.json()["principal"] == f"apikey:{kid.hex}"
        keys = (await client.get("/auth/api-keys", headers=admin)).json()["items"]
        assert str(kid) in [k["id"] for k in keys]
        # revoked by its dashed id: the key stops working at once (this worker had it cached)
        revoked = await client.delete(f"/auth/api-keys/{kid}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["id"] == str(kid) and revoked.json()["revoked_at"]
        assert (await client.get("/auth/me", headers=as_key)).status_code == 401
        again = await client.delete(f"/auth/api-keys/{kid.hex}", headers=admin)
        assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]


async def test_a_malformed_or_unknown_id_is_not_found_in_the_shared_shape(
    database: DatabaseTarget, upstreams: Upstreams
) -> None:
    async with running_gateway(gateway_settings(database, upstreams)) as client:
        admin = await admin_headers(client)
        for bad in ("not-an-id", "0" * 31, "g" * 32, "x" * 300, str(uuid.uuid4()), uuid.uuid4().hex):
            for method, path, body in (
                ("GET", f"/auth/users/{bad}", None),
                ("PATCH", f"/auth/users/{bad}", {"active": False}),
                ("DELETE", f"/auth/api-keys/{bad}", None),
            ):
                answer = await client.request(method, path, json=body, headers=admin)
                assert answer.status_code == 404 and _is_error(answer.json(), "not_found"), (method, path, answer.text)
        wrong_type = await client.post(
            "/auth/users",
            json={"email": "o@gateway.test", "password": "ids-password-1234", "role": "member", "organisation_id": 7},
            headers=admin,
        )
        assert wrong_type.status_code == 422 and _is_error(wrong_type.json(), "validation_error")
