"""Kafka, direct: a partner's SCRAM user reads its granted public topics and nothing else.

Checked with an independent client (kcat, librdkafka) against the real broker, which runs with
SASL/SCRAM-SHA-512 and KRaft's StandardAuthorizer. The partners service itself connects as its own
least-rights user (``service.partners``), provisioned from its spec as `make up` does.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from distretto_dev.testing import DatabaseTarget, kcat, service_client
from distretto_shared.contracts import membership as ms
from distretto_shared.contracts import public as pub
from distretto_shared.kafka_security import KafkaCredentials, default_credentials, provision_services, service_user
from distretto_shared.topics import ensure_topics, topic_name
from partners.app import SPEC, create_app

from .conftest import ORG_TYPES, make_settings

ORG_TOPIC = "public.organisation.v1"
PROJECT_TOPIC = "public.project.v1"


async def _plant(bootstrap: str, records: dict[str, bytes]) -> None:
    """One record per topic, written as the broker's super user."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **default_credentials().aiokafka())
    await producer.start()
    try:
        for topic, value in records.items():
            await producer.send_and_wait(topic, value=value, key=b"k")
    finally:
        await producer.stop()


def _partners_user(bootstrap: str) -> dict[str, Any]:
    """The partners service's own Kafka user, with the rights derived from its spec."""
    password = f"pw-{uuid.uuid4().hex}"
    provision_services(bootstrap, [SPEC], {"partners": password})
    return {"kafka_sasl_username": service_user("partners"), "kafka_sasl_password": password}


def _read(bootstrap: str, creds: dict[str, Any], topic: str, *extra: str) -> Any:
    return kcat(bootstrap, creds["username"], creds["password"], "-C", "-t", topic, "-o", "beginning", "-e", *extra)


def _group_read(bootstrap: str, creds: dict[str, Any], group: str, topic: str) -> Any:
    return kcat(
        bootstrap, creds["username"], creds["password"], "-X", "auto.offset.reset=earliest", "-G", group, "-e", topic
    )


async def test_partner_reads_its_granted_topic_and_is_refused_everything_else(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    org, project, contact = topic_name(ORG_TOPIC), topic_name(PROJECT_TOPIC), topic_name(ms.CONTACT_TOPIC.name)
    await ensure_topics(kafka_bootstrap, [*pub.PUBLIC_TOPICS, ms.CONTACT_TOPIC, ms.ORGANISATION_TOPIC])
    await _plant(
        kafka_bootstrap,
        {org: b"public-org-record", project: b"public-project-record", contact: b"mario.rossi@example.org"},
    )
    app = create_app(make_settings(database, kafka_bootstrap, **_partners_user(kafka_bootstrap)))
    async with service_client(app) as client:
        created = await client.post("/partners", json={"name": "Agency", "event_types": ORG_TYPES, "kafka": True})
        assert created.status_code == 201, created.text
        body = created.json()
        creds = body["kafka"]
        # the user is named after the partner's id in its stored 32-hex form (the API answers it dashed)
        user = f"partner.{uuid.UUID(body['id']).hex}"
        assert creds["username"] == body["kafka_user"] == user
        assert creds["topics"] == [org] and creds["group_prefix"] == f"{user}."
        assert len(creds["password"]) >= 32
        shown = await client.get(f"/partners/{body['id']}")
        assert shown.json()["kafka_user"] == creds["username"] and creds["password"] not in shown.text

        granted = _read(kafka_bootstrap, creds, org)
        assert granted.returncode == 0, granted.stderr
        assert granted.stdout.strip() == "public-org-record"
        # the balanced consumer (-G): its group id must start with the partner's prefix
        in_group = _group_read(kafka_bootstrap, creds, f"{creds['group_prefix']}portal", org)
        assert in_group.stdout.strip() == "public-org-record", in_group.stderr
        other_group = _group_read(kafka_bootstrap, creds, "someone-else", org)
        assert "public-org-record" not in other_group.stdout
        assert "group authorization failed" in other_group.stderr.lower(), other_group.stderr

        for refused_topic in (project, contact, f"{org}.dlq", topic_name(ms.ORGANISATION_TOPIC.name)):
            refused = _read(kafka_bootstrap, creds, refused_topic)
            assert refused.returncode != 0, refused_topic
            assert "authoriz" in refused.stderr.lower(), refused.stderr
            assert "mario.rossi" not in refused.stdout and "public-project" not in refused.stdout
        write = kcat(kafka_bootstrap, creds["username"], creds["password"], "-P", "-t", org, input="forged\n")
        assert "authoriz" in write.stderr.lower(), write.stderr  # read-only: it cannot publish on a public topic
        assert _read(kafka_bootstrap, creds, org).stdout.strip() == "public-org-record"

        wrong = kcat(kafka_bootstrap, creds["username"], "not-the-password-at-all", "-L", timeout=60)
        assert wrong.returncode != 0 and "authentication" in wrong.stderr.lower(), wrong.stderr

        # a wider grant widens the ACLs; revoking takes the user away
        wider = await client.patch(
            f"/partners/{body['id']}", json={"event_types": [*ORG_TYPES, "distretto.public.project.registered.v1"]}
        )
        assert wider.status_code == 200, wider.text
        assert _read(kafka_bootstrap, creds, project).stdout.strip() == "public-project-record"
        revoked = await client.delete(f"/partners/{body['id']}/kafka")
        assert revoked.status_code == 200 and revoked.json()["kafka_user"] is None
        gone = _read(kafka_bootstrap, creds, org)
        assert gone.returncode != 0 and "authentication" in gone.stderr.lower(), gone.stderr

        # new credentials on request; deactivating the partner removes them too
        again = await client.post(f"/partners/{body['id']}/kafka")
        assert again.status_code == 201, again.text
        fresh = again.json()
        assert fresh["password"] != creds["password"]
        assert _read(kafka_bootstrap, fresh, org).stdout.strip() == "public-org-record"
        off = await client.patch(f"/partners/{body['id']}", json={"active": False})
        assert off.status_code == 200 and off.json()["kafka_user"] is None
        assert _read(kafka_bootstrap, fresh, org).returncode != 0


async def test_a_dead_broker_refuses_kafka_access_and_leaves_nothing(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    admin = KafkaCredentials.from_env()
    app = create_app(
        make_settings(
            database,
            "127.0.0.1:1",
            kafka_admin_timeout_seconds=3,
            kafka_sasl_username=admin.username,
            kafka_sasl_password=admin.password,
        )
    )
    async with service_client(app) as client:
        refused = await client.post("/partners", json={"name": "Agency", "event_types": ORG_TYPES, "kafka": True})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "kafka_unavailable" and "nothing was changed" in refused.json()["message"]
        assert (await client.get("/partners")).json()["total"] == 0
        plain = await client.post("/partners", json={"name": "Agency", "event_types": ORG_TYPES})
        assert plain.status_code == 201  # the other channels do not need the broker's admin side
        later = await client.post(f"/partners/{plain.json()['id']}/kafka")
        assert later.status_code == 503
        assert (await client.get(f"/partners/{plain.json()['id']}")).json()["kafka_user"] is None
    assert os.environ.get("KAFKA_SASL_USERNAME")  # the session's broker is SASL: the helpers use its super user
