"""Every route of the newsletter × every role (docs/service-guide.md, "Authorisation").

The newsletter is the foundation's work: every route is for staff, but a subscriber's own pages
(their links carry a signed token) and the mail provider's signed bounce webhook.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from distretto_dev.authz_matrix import PUBLIC, STAFF, Case, assert_covered, check, ok
from distretto_dev.testing import DatabaseTarget, service_client
from newsletter import domain
from newsletter.app import create_app

from .conftest import SmtpSink, make_settings

SECRET = "test-secret"  # make_settings' secret_key
_n = itertools.count()
NEWS_RULE = {"field": "list", "any_of": ["news"]}


async def test_every_route_every_role(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, sink: SmtpSink
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, sink))
    assert_covered(app, CASES)
    async with service_client(app) as client:
        lst = await ok(await client.post("/lists", json={"slug": "news", "name": "News"}), 201)
        sub = await ok(
            await client.post("/subscribers", json={"email": "sub.secret@example.org", "lists": ["news"]}), 201
        )
        tpl = await ok(
            await client.post(
                "/templates",
                json={"name": "T", "subject": "S", "body_html": "<p>tpl-secret</p>", "body_text": "tpl-secret"},
            ),
            201,
        )
        campaign = await ok(
            await client.post(
                "/campaigns", json={"name": "C", "subject": "S", "template_id": tpl["id"], "lists": ["news"]}
            ),
            201,
        )

        segment = await ok(await client.post("/segments", json={"name": "news readers", "rule": NEWS_RULE}), 201)

        async def fresh_segment() -> dict[str, Any]:
            body = {"name": f"segment-{next(_n)}", "rule": NEWS_RULE}
            return {"segment": (await ok(await client.post("/segments", json=body), 201))["id"]}

        async def fresh_subscriber() -> dict[str, Any]:
            body = {"email": f"gone-{next(_n)}@example.org", "lists": ["news"]}
            return {"subscriber_id": (await ok(await client.post("/subscribers", json=body), 201))["id"]}

        for case in CASES:
            if case.method == "DELETE":
                case.fresh = fresh_segment if case.path.startswith("/segments") else fresh_subscriber
        later = datetime.now(UTC) + timedelta(days=3)
        await check(
            client,
            "newsletter",
            CASES,
            {
                "list_id": lst["id"],
                "subscriber_id": sub["id"],
                "template_id": tpl["id"],
                "campaign_id": campaign["id"],
                "segment": segment["id"],
                "token": domain.sign_token(SECRET, "unsubscribe", sub["id"]),
                "confirm_token": domain.sign_token(SECRET, "confirm", sub["id"], expires=later, extra="x"),
                "preferences_token": domain.sign_token(SECRET, "preferences", sub["id"]),
            },
            # Nobody but staff sees a subscriber's address or the templates (the walker's "A"
            # and "B" are organisations; these markers belong to nobody else).
            {"staff-only": ["sub.secret@", "tpl-secret", "gone-"]},
            org_a="org-matrix-a",
            org_b="org-matrix-b",
        )


def _signup(_: Any) -> dict[str, Any]:
    return {"email": f"new-{next(_n)}@example.org", "lists": ["news"]}


CASES: list[Case] = [
    # a subscriber's own pages: anyone (the token is the authorisation)
    Case("POST", "/signup", PUBLIC, body=_signup),
    Case("GET", "/confirm", PUBLIC, capability=True),
    Case("POST", "/confirm", PUBLIC, capability=True),
    Case("GET", "/preferences", PUBLIC, capability=True),
    Case("POST", "/preferences", PUBLIC, body={"lists": ["news"]}, capability=True),
    Case("GET", "/unsubscribe/{token}", PUBLIC, capability=True),
    Case("POST", "/unsubscribe/{token}", PUBLIC, capability=True),
    # the provider's webhook: its signature is the authentication, the caller's role changes nothing
    Case(
        "POST",
        "/bounces",
        PUBLIC,
        body={"email": "sub.secret@example.org", "kind": "hard"},
        same_for_all=frozenset({401}),
    ),
    # staff work
    Case("GET", "/bounces", STAFF),
    Case("GET", "/lists", STAFF),
    Case("POST", "/lists", STAFF, body=lambda _: {"slug": f"list-{next(_n)}", "name": "L"}),
    Case("GET", "/lists/{list_id}", STAFF),
    Case("GET", "/subscribers", STAFF),
    Case("POST", "/subscribers", STAFF, body=lambda _: {"email": f"gone-{next(_n)}@example.org"}),
    Case("GET", "/subscribers/{subscriber_id}", STAFF),
    Case("PATCH", "/subscribers/{subscriber_id}", STAFF, body={"name": "Renamed"}),
    Case("GET", "/subscribers/{subscriber_id}/export", STAFF),
    Case("DELETE", "/subscribers/{subscriber_id}", STAFF),
    Case("GET", "/templates", STAFF),
    Case(
        "POST",
        "/templates",
        STAFF,
        body={"name": "T2", "subject": "S", "body_html": "<p>tpl-secret</p>", "body_text": "tpl-secret"},
    ),
    Case("GET", "/templates/{template_id}", STAFF),
    Case("PATCH", "/templates/{template_id}", STAFF, body={"subject": "S2"}),
    Case("GET", "/campaigns", STAFF),
    Case(
        "POST",
        "/campaigns",
        STAFF,
        body=lambda v: {"name": "C2", "subject": "S", "template_id": v["template_id"], "lists": ["news"]},
    ),
    Case("GET", "/campaigns/{campaign_id}", STAFF),
    Case("GET", "/campaigns/{campaign_id}/recipients", STAFF),
    Case("POST", "/campaigns/recipients", STAFF, body={"lists": ["news"]}),
    Case("GET", "/transactional-mails", STAFF),
    Case("PATCH", "/campaigns/{campaign_id}", STAFF, body={"name": "C renamed"}),
    Case("GET", "/campaigns/{campaign_id}/deliveries", STAFF),
    Case("POST", "/campaigns/{campaign_id}/test", STAFF, body={"emails": ["editor@example.org"]}),
    Case("POST", "/campaigns/{campaign_id}/schedule", STAFF, body={"send_at": "2031-01-01T09:00:00Z"}),
    Case("POST", "/campaigns/{campaign_id}/unschedule", STAFF, body={}),
    Case("POST", "/campaigns/{campaign_id}/start", STAFF, body={}),
    Case("POST", "/campaigns/{campaign_id}/pause", STAFF, body={}),
    Case("POST", "/campaigns/{campaign_id}/resume", STAFF, body={}),
    Case("POST", "/campaigns/{campaign_id}/cancel", STAFF, body={}),
    Case("POST", "/digest", STAFF, body={}),
    # segments read the whole audience (a sample shows addresses): staff only
    Case("GET", "/segments", STAFF),
    Case("POST", "/segments", STAFF, body=lambda _: {"name": f"segment-{next(_n)}", "rule": NEWS_RULE}),
    Case("POST", "/segments/preview", STAFF, body={"rule": NEWS_RULE}),
    Case("GET", "/segments/{segment}", STAFF),
    Case("PATCH", "/segments/{segment}", STAFF, body={"description": "readers of the news list"}),
    Case("GET", "/segments/{segment}/count", STAFF),
    Case("GET", "/segments/{segment}/sample", STAFF),
    Case("DELETE", "/segments/{segment}", STAFF),
]

for _case in CASES:  # the pages read their token from the query string
    if _case.path == "/confirm":
        _case.query = {"token": "{confirm_token}"}
    elif _case.path == "/preferences":
        _case.query = {"token": "{preferences_token}"}
