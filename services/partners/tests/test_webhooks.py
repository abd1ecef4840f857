"""Webhooks verified by a real receiver using the ``standardwebhooks`` library: every delivery
signed, in order per endpoint, retried then failed, logged, replayed; rotation; several workers."""

from __future__ import annotations

from typing import Any

from distretto_dev.testing import DatabaseTarget, publish_events, service_client, wait_for
from partners.app import create_app

from .conftest import ORG_TYPES, joined, make_settings, running_receiver


async def _partner_with_endpoints(client: Any, receiver: Any, paths: list[str]) -> list[dict[str, Any]]:
    pid = (await client.post("/partners", json={"name": "Agency", "event_types": ORG_TYPES})).json()["id"]
    endpoints = []
    for path in paths:
        created = await client.post(f"/partners/{pid}/webhooks", json={"url": receiver.url(path)})
        assert created.status_code == 201, created.text
        endpoint = created.json()
        receiver.secrets[path] = [endpoint["secret"]]
        endpoints.append(endpoint)
    return endpoints


async def test_deliveries_are_signed_ordered_retried_logged_and_replayable(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap, webhook_workers=3))
    async with running_receiver() as receiver, service_client(app) as client:
        a, b = await _partner_with_endpoints(client, receiver, ["/a", "/b"])
        receiver.fail["/b"] = 2  # /b answers 503 twice: retried on the (short) schedule, then delivered
        orgs = [joined(n, organisation_id="org-same") for n in range(1, 6)]  # one key: one order
        await publish_events(kafka_bootstrap, orgs)  # type: ignore[arg-type]

        await wait_for(lambda: _done(receiver, "/a", 5), what="5 deliveries to /a")
        await wait_for(lambda: _done(receiver, "/b", 5), what="5 deliveries to /b")
        assert receiver.unverified == []  # the library verified every request
        log = (await client.get(f"/webhooks/{a['id']}/messages")).json()["items"]
        ids_in_order = [m["event_id"] for m in sorted(log, key=lambda m: m["id"])]
        for path in ("/a", "/b"):
            got = [d.webhook_id for d in receiver.accepted(path)]
            assert got == ids_in_order, path  # in order, once each (the failures were retried in place)
            assert all(d.body["id"] == d.webhook_id for d in receiver.accepted(path))  # webhook-id = CloudEvents id
        refused = [d for d in receiver.deliveries if d.endpoint == "/b" and d.status != 200]
        assert len(refused) == 2 and refused[0].webhook_id == refused[1].webhook_id == ids_in_order[0]
        assert receiver.max_in_flight == 1  # one request at a time per endpoint, with three workers

        attempts = (await client.get(f"/webhooks/{b['id']}/attempts")).json()
        logged = sorted(attempts["items"], key=lambda x: x["id"])
        assert attempts["total"] == len(logged)
        # Every answer the receiver gave is logged, in order. A request that never reached it (on a
        # loaded machine a pooled keep-alive connection can be closed by the server as it is reused)
        # is logged too, with no status and the transport error, and retried: at-least-once, in order.
        answered = [x["status_code"] for x in logged if x["status_code"] is not None]
        assert answered == [503, 503, 200, 200, 200, 200, 200]
        assert all(x["error"] for x in logged if x["status_code"] is None)
        assert all(x["response_ms"] is not None for x in logged)

        replayed = await client.post(f"/webhooks/{a['id']}/replay", json={"event_id": ids_in_order[2]})
        assert replayed.json() == {"queued": 1}
        await wait_for(lambda: _done(receiver, "/a", 6), what="the replayed message")
        assert receiver.accepted("/a")[-1].webhook_id == ids_in_order[2]
        since = await client.post(f"/webhooks/{a['id']}/replay", json={"since": "2000-01-01T00:00:00Z"})
        assert since.json() == {"queued": 5}
        await wait_for(lambda: _done(receiver, "/a", 11), what="everything since a time, again")
        assert [d.webhook_id for d in receiver.accepted("/a")][6:] == ids_in_order


async def _done(receiver: Any, path: str, n: int) -> bool:
    return len(receiver.accepted(path)) >= n


async def test_exhausted_retries_fail_the_message_the_next_goes_on_and_a_failing_endpoint_is_disabled(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = make_settings(
        database, kafka_bootstrap, webhook_retry_schedule=[0.1], webhook_disable_after_seconds=3600
    )
    app = create_app(settings)
    async with running_receiver() as receiver, service_client(app) as client:
        (ep,) = await _partner_with_endpoints(client, receiver, ["/flaky"])
        receiver.fail["/flaky"] = 2  # first message: 2 attempts (1 + 1 retry), both refused → failed
        await publish_events(kafka_bootstrap, [joined(1, organisation_id="o"), joined(2, organisation_id="o")])
        await wait_for(lambda: _done(receiver, "/flaky", 1), what="the second message after the first failed")

        async def statuses() -> list[str]:
            items = (await client.get(f"/webhooks/{ep['id']}/messages")).json()["items"]
            return sorted(m["status"] for m in items)

        assert await wait_for(lambda: _eq(statuses, ["delivered", "failed"]), what="one failed, one delivered")

        # An endpoint that never succeeds for longer than the limit is disabled.
        app_settings = app.state.ctx.settings
        app_settings.webhook_disable_after_seconds = 0.0
        receiver.refuse_all.add("/flaky")
        await publish_events(kafka_bootstrap, [joined(3, organisation_id="o")])

        async def disabled() -> bool:
            shown = (await client.get(f"/webhooks/{ep['id']}")).json()
            return shown["enabled"] is False and "failing since" in (shown["disabled_reason"] or "")

        await wait_for(disabled, what="the endpoint disabled")
        receiver.refuse_all.clear()
        app_settings.webhook_disable_after_seconds = 3600
        assert (await client.post(f"/webhooks/{ep['id']}/enable")).json()["enabled"] is True
        await wait_for(lambda: _done(receiver, "/flaky", 2), what="the waiting message after enabling")


async def _eq(fn: Any, expected: Any) -> bool:
    return bool(await fn() == expected)


async def test_after_a_rotation_both_secrets_verify_for_the_overlap(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap))
    async with running_receiver() as receiver, service_client(app) as client:
        (ep,) = await _partner_with_endpoints(client, receiver, ["/old"])
        old = receiver.secrets["/old"][0]
        new = (await client.post(f"/webhooks/{ep['id']}/rotate-secret")).json()["secret"]
        receiver.secrets["/old"] = [old]  # a receiver not yet updated still verifies
        await publish_events(kafka_bootstrap, [joined(1)])
        await wait_for(lambda: _done(receiver, "/old", 1), what="delivery verified with the old secret")
        receiver.secrets["/old"] = [new]  # and an updated one verifies with the new secret
        await publish_events(kafka_bootstrap, [joined(2)])
        await wait_for(lambda: _done(receiver, "/old", 2), what="delivery verified with the new secret")
        assert receiver.unverified == []
        receiver.secrets["/old"] = ["whsec_" + "A" * 43 + "="]  # any other secret fails verification
        await publish_events(kafka_bootstrap, [joined(3)])
        await wait_for(lambda: _has(receiver.unverified), what="a delivery the wrong secret cannot verify")


async def _has(items: list[str]) -> bool:
    return bool(items)
