"""No brand left behind: the public view removes an organisation's name in every form it takes in free text,
its website's name included (the organisation as membership's events describe it; a real broker and database)."""

from __future__ import annotations

import uuid
from typing import Any

from distretto_dev.testing import publish_events, service_client, wait_for
from distretto_shared.contracts import membership
from distretto_shared.topics import ensure_topics
from matchmaking.app import create_app
from matchmaking.config import Settings

PLANTED = (
    "CellForge S.r.l. offers its closed CAR-T bioreactor. CELLFORGE's GMP suite, run by the Cell Forge team "
    "(see forgecells.eu or just ForgeCells), was spun out of cellforge biotech srl; Cellforge-Biotech, S.p.A. "
    "licenses it. CellForge Biotech Ltd holds the process."
)


async def test_the_public_view_removes_every_form_of_the_owners_name(
    settings: Settings, kafka_bootstrap: str, publish: Any
) -> None:
    owner = uuid.uuid4()
    await ensure_topics(kafka_bootstrap, [membership.ORGANISATION_TOPIC])
    async with service_client(create_app(settings)) as client:
        org = membership.OrganisationProfile(
            organisation_id=str(owner),
            name="CellForge Biotech S.r.l.",
            kind="company",
            website="https://www.forgecells.eu/en",
            description="Cell therapy manufacturing.",
        )
        await publish_events(
            kafka_bootstrap, [membership.OrganisationRegistered(organisation_id=str(owner), profile=org)]
        )

        async def known() -> Any:
            r = await client.get(f"/organisations/{owner}")
            return r.json() if r.status_code == 200 else None

        await wait_for(known, what="organisation registered")
        o = await publish(
            client,
            owner_organisation_id=str(owner),
            title="Closed CAR-T bioreactor by CellForge",
            summary=PLANTED,
            keywords=["CAR-T", "ForgeCells", "cell therapy"],
        )
        own = (await client.get(f"/opportunities/{o['id']}")).json()
        assert "CellForge S.r.l." in own["summary"]  # the owner sees the original
        public = (await client.get(f"/public/opportunities/{o['id']}")).json()
        text = f"{public['title']} {public['summary']} {public['keywords']}"
        for secret in (
            "CellForge",
            "CELLFORGE",
            "Cell Forge",
            "cellforge",
            "Cellforge",
            "ForgeCells",
            "forgecells",
            "S.r.l",
            "srl",
            "S.p.A",
            "Ltd",
        ):
            assert secret not in text, (secret, text)
        # The subject is still there to read.
        assert "closed CAR-T bioreactor" in public["summary"] and "GMP suite" in public["summary"]
        assert public["keywords"] == ["CAR-T", "cell therapy"]


async def test_a_website_too_long_for_the_column_does_not_lose_the_organisation(
    settings: Settings, kafka_bootstrap: str
) -> None:
    org_id = str(uuid.uuid4())
    await ensure_topics(kafka_bootstrap, [membership.ORGANISATION_TOPIC])
    async with service_client(create_app(settings)) as client:
        org = membership.OrganisationProfile(
            organisation_id=org_id,
            name="Longsite Diagnostics S.p.A.",
            kind="company",
            website="https://www." + "a" * 400 + ".it",
            description="Rapid tests.",
        )
        await publish_events(kafka_bootstrap, [membership.OrganisationRegistered(organisation_id=org_id, profile=org)])

        async def known() -> Any:
            r = await client.get(f"/organisations/{org_id}")
            return r.json() if r.status_code == 200 else None

        found = await wait_for(known, what="organisation registered despite its website")
        assert found["name"] == "Longsite Diagnostics S.p.A."


async def test_a_name_learnt_or_changed_after_the_names_were_loaded_is_removed_from_the_next_view(
    settings: Settings, kafka_bootstrap: str, publish: Any
) -> None:
    """The service keeps the name forms in memory: an organisation registered, or renamed, after a
    public view was served is removed from the next one (every instance learns it from the change log)."""
    owner, other = uuid.uuid4(), uuid.uuid4()
    await ensure_topics(kafka_bootstrap, [membership.ORGANISATION_TOPIC])
    async with service_client(create_app(settings)) as client:
        o = await publish(
            client,
            owner_organisation_id=str(owner),
            title="Closed CAR-T bioreactor",
            summary="Validated with Zephyrgen Therapeutics and with Quorvance Pharma on two GMP sites.",
        )

        async def public_summary() -> str:
            return str((await client.get(f"/public/opportunities/{o['id']}")).json()["summary"])

        assert "Zephyrgen" in await public_summary()  # an organisation nobody told the service of

        def profile(name: str) -> membership.OrganisationProfile:
            return membership.OrganisationProfile(organisation_id=str(other), name=name, kind="company")

        await publish_events(
            kafka_bootstrap,
            [membership.OrganisationRegistered(organisation_id=str(other), profile=profile("Zephyrgen Therapeutics"))],
        )

        async def without(name: str) -> str | None:
            text = await public_summary()
            return text if name not in text else None

        text = await wait_for(lambda: without("Zephyrgen"), what="the new organisation's name removed")
        assert "Quorvance" in text and "[organisation]" in text

        await publish_events(
            kafka_bootstrap,
            [membership.OrganisationUpdated(organisation_id=str(other), profile=profile("Quorvance Pharma S.p.A."))],
        )
        text = await wait_for(lambda: without("Quorvance"), what="the new name removed")
        assert "GMP sites" in text
