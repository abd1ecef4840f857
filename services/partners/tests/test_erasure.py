"""A partner's contact address may be a person's: when membership erases that person (ContactErased,
found by the hash of the address), partners forgets it and scrubs it from disk; an admin clearing
the address scrubs it too. A broken erasure event loses nothing and changes nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiokafka import AIOKafkaProducer
from sqlalchemy.engine import make_url

from distretto_dev.testing import DatabaseTarget, publish_events, service_client, wait_for
from distretto_shared.contracts import membership as ms
from distretto_shared.kafka_security import default_credentials
from distretto_shared.topics import topic_name
from partners.app import create_app

from .conftest import ORG_TYPES, joined, make_settings

PERSON = "Giulia.Rossi@Agenzia.example"
TEAM = "integrazioni@agenzia.example"


def _hash(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def _on_disk(database: DatabaseTarget) -> bytes:
    path = Path(make_url(database.url).database or "")
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def test_an_erased_person_s_address_leaves_the_partner_and_the_disk(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    app = create_app(make_settings(database, kafka_bootstrap))
    async with service_client(app) as client:
        a = (
            await client.post("/partners", json={"name": "Agenzia", "event_types": ORG_TYPES, "contact_email": PERSON})
        ).json()
        b = (
            await client.post("/partners", json={"name": "Ateneo", "event_types": ORG_TYPES, "contact_email": TEAM})
        ).json()
        assert a["contact_email"] == PERSON

        # A broken record on the contact topic first: it changes nothing and does not stop the next one.
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, **default_credentials().aiokafka())
        await producer.start()
        try:
            await producer.send_and_wait(
                topic_name(ms.CONTACT_TOPIC.name),
                b"{not json",
                key=b"c-0",
                headers=[("ce_type", ms.ContactErased.event_type.encode()), ("ce_id", b"broken-1")],
            )
        finally:
            await producer.stop()
        # The person erased in membership: only the hash of the address travels.
        erased = ms.ContactErased(contact_id="c-1", organisation_id="o-1", email_sha256=_hash(PERSON))
        await publish_events(kafka_bootstrap, [erased])

        async def forgotten() -> bool:
            return (await client.get(f"/partners/{a['id']}")).json()["contact_email"] is None

        await wait_for(forgotten, what="the erased person's address removed from the partner")
        assert (await client.get(f"/partners/{b['id']}")).json()["contact_email"] == TEAM  # a team address stays
        # The same event again (at least once) changes nothing.
        await publish_events(kafka_bootstrap, [erased])
        await publish_events(kafka_bootstrap, [joined(1)])  # the consumers move on
        assert (await client.get(f"/partners/{b['id']}")).json()["contact_email"] == TEAM

        # An admin clearing an address: gone from the partner, and from the disk after the scrub.
        cleared = await client.patch(f"/partners/{b['id']}", json={"contact_email": None})
        assert cleared.status_code == 200 and cleared.json()["contact_email"] is None

        if database.backend == "sqlite":

            async def scrubbed() -> bool:
                disk = _on_disk(database)
                return PERSON.encode() not in disk and TEAM.encode() not in disk

            await wait_for(scrubbed, what="both addresses scrubbed from the database file")
