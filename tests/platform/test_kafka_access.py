"""Every service's Kafka user has the rights its spec implies, and no more (kcat as the client).

The users and ACLs are made by deploy/kafka_access.py (what `make up` and compose run) from the
services' specs; the broker is the session's SASL/SCRAM broker with the StandardAuthorizer.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from distretto_dev.testing import kcat, wait_for
from distretto_shared.contracts import matchmaking as mm
from distretto_shared.contracts import membership as ms
from distretto_shared.contracts import projects as pj
from distretto_shared.kafka_security import Acl, KafkaCredentials, default_credentials, service_user
from distretto_shared.topics import ensure_topics, topic_name

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))
import kafka_access


@pytest.fixture
def rights(topic_prefix: str) -> dict[str, list[Acl]]:
    """Every service's ACLs as its own process derives them from its spec (this test's topic prefix)."""
    return kafka_access.derived()


@pytest.fixture
async def users(kafka_bootstrap: str, rights: dict[str, list[Acl]]) -> AsyncIterator[dict[str, str]]:
    """Every service's user and password on the session's broker, with those ACLs, once each password
    logs in: what the test asserts is authorisation, so authentication must be settled before it (a
    fresh user's credential reaches the broker that serves the login a moment after it is committed;
    one CI run's gateway login failed there, and its refusal said "transport failure", not "authorised")."""
    passwords = {name: f"pw-{uuid.uuid4().hex}" for name in kafka_access.SERVICES}
    kafka_access.provision(kafka_bootstrap, passwords, KafkaCredentials.from_env(), attempts=1, rights=rights)
    for name, password in passwords.items():

        async def logs_in(name: str = name, password: str = password) -> bool:
            listed = await asyncio.to_thread(kcat, kafka_bootstrap, service_user(name), password, "-L", timeout=30)
            return listed.returncode == 0

        await wait_for(logs_in, timeout=30, what=f"{service_user(name)} to log in")
    yield passwords


def _read(bootstrap: str, service: str, password: str, topic: str) -> object:
    return kcat(bootstrap, service_user(service), password, "-C", "-t", topic, "-o", "beginning", "-e")


async def test_a_service_reads_what_it_consumes_and_is_refused_the_rest(
    kafka_bootstrap: str, topic_prefix: str, users: dict[str, str], rights: dict[str, list[Acl]]
) -> None:
    await ensure_topics(kafka_bootstrap, [ms.ORGANISATION_TOPIC, ms.CONTACT_TOPIC, pj.PROJECT_TOPIC, mm.MATCH_TOPIC])
    organisation, contact = topic_name(ms.ORGANISATION_TOPIC.name), topic_name(ms.CONTACT_TOPIC.name)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", **default_credentials().aiokafka())
    await producer.start()
    try:
        await producer.send_and_wait(organisation, b"organisation-record", key=b"o")
        await producer.send_and_wait(contact, b"contact-record", key=b"c")
    finally:
        await producer.stop()

    # projects consumes the organisations, not the contacts (which carry consents and hashes of people)
    allowed = await asyncio.to_thread(_read, kafka_bootstrap, "projects", users["projects"], organisation)
    assert allowed.returncode == 0, allowed.stderr  # type: ignore[attr-defined]
    assert allowed.stdout.strip() == "organisation-record"  # type: ignore[attr-defined]
    refused = await asyncio.to_thread(_read, kafka_bootstrap, "projects", users["projects"], contact)
    assert refused.returncode != 0 and "authoriz" in refused.stderr.lower(), refused.stderr  # type: ignore[attr-defined]
    assert "contact-record" not in refused.stdout  # type: ignore[attr-defined]

    # the newsletter does consume the contacts; the gateway consumes nothing at all
    news = await asyncio.to_thread(_read, kafka_bootstrap, "newsletter", users["newsletter"], contact)
    assert news.stdout.strip() == "contact-record", news.stderr  # type: ignore[attr-defined]
    gateway = await asyncio.to_thread(_read, kafka_bootstrap, "gateway", users["gateway"], organisation)
    assert gateway.returncode != 0 and "authoriz" in gateway.stderr.lower(), gateway.stderr  # type: ignore[attr-defined]

    # matchmaking may not publish as membership
    forged = await asyncio.to_thread(
        kcat,
        kafka_bootstrap,
        service_user("matchmaking"),
        users["matchmaking"],
        "-P",
        "-t",
        organisation,
        input="forged\n",
    )
    assert "authoriz" in forged.stderr.lower(), forged.stderr
    again = await asyncio.to_thread(_read, kafka_bootstrap, "projects", users["projects"], organisation)
    assert again.stdout.strip() == "organisation-record"  # type: ignore[attr-defined]

    wrong = await asyncio.to_thread(_read, kafka_bootstrap, "projects", "not-the-password-of-projects", organisation)
    assert wrong.returncode != 0 and "authentication" in wrong.stderr.lower()  # type: ignore[attr-defined]

    _rights_follow_the_contracts(rights, topic_prefix)


def _rights_follow_the_contracts(rights: dict[str, list[Acl]], topic_prefix: str) -> None:
    """Derived from the specs, not written by hand: what each service consumes it may read, what it
    publishes it may write; only the console reads dead letters, only partners manages access."""
    organisation, contact = topic_name(ms.ORGANISATION_TOPIC.name), topic_name(ms.CONTACT_TOPIC.name)

    def ops(service: str, topic: str) -> set[str]:
        return {a.operation for a in rights[service] if a.resource_type == "TOPIC" and a.name == topic}

    for name, acls in rights.items():
        assert {a.principal for a in acls} <= {f"User:service.{name}"}, name
        assert any(a.resource_type == "CLUSTER" for a in acls) == (name == "partners"), name
        reads_dlq = any(a.operation == "READ" and a.name.endswith(".dlq") for a in acls)
        assert reads_dlq == (name == "console"), name
    assert ops("membership", organisation) >= {"CREATE", "WRITE"} and "READ" not in ops("membership", organisation)
    assert ops("projects", organisation) >= {"READ"} and "WRITE" not in ops("projects", organisation)
    assert ops("projects", contact) == set() and "READ" in ops("newsletter", contact)
    assert "WRITE" in ops("projects", organisation + ".dlq")  # its dead letters
    assert ops("matchmaking", topic_name(mm.MATCH_TOPIC.name)) >= {"WRITE"}
    assert ops("partners", topic_name(pj.PROJECT_TOPIC.name)) >= {"READ"}
    assert ops("partners", topic_name("public.organisation.v1")) >= {"WRITE"}
    assert rights["gateway"] == []
    assert {(a.resource_type, a.name, a.pattern) for a in rights["projects"] if a.resource_type == "GROUP"} == {
        ("GROUP", "projects.", "PREFIXED")
    }
    assert os.environ.get("DISTRETTO_TOPIC_PREFIX") == topic_prefix
