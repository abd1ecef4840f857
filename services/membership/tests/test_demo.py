"""The demo register, loaded through the API, reproduces the scale the seeds quote."""

from __future__ import annotations

from typing import Any

from membership.demo import load_demo


async def test_demo_reproduces_the_seeds_figures_and_loads_once(membership: Any) -> None:
    added = await load_demo(membership.http)
    assert added["organisations"] == added["approved"] >= 210

    figures = await membership.get("/figures")
    # "oltre 190 aziende aderenti: oltre 11.000 addetti di cui circa 1.400 in R&S,
    #  oltre 5.5 miliardi di fatturato, 37.000 mq di laboratori e oltre 800 brevetti"
    assert figures["companies"] >= 190
    assert figures["staff"] >= 11_000
    assert 1_300 <= figures["rd_staff"] <= 1_500
    assert figures["turnover_eur"] >= 5.5e9
    assert figures["lab_m2"] >= 37_000
    assert figures["patents"] >= 800
    assert set(figures["by_sector"]) == {
        "biotech",
        "pharma",
        "medical_devices",
        "diagnostics",
        "nutraceutics",
        "cosmeceutics",
        "ict_life_sciences",
    }
    assert {"university", "research_institute", "hospital", "health_authority", "foundation"} <= set(figures["by_kind"])
    names = {o["name"] for o in (await membership.get("/organisations", limit=500))["items"]}
    assert {
        "Università di Pisa",
        "Scuola Normale Superiore",
        "AOU Careggi",
        "Fondazione Toscana Life Sciences",
    } <= names
    newsletter = await membership.get("/contacts", consent_newsletter=True)
    assert newsletter["total"] >= 20

    # A second run adds nothing: no request writes, no event is produced.
    events = await membership.outbox_count()
    again = await load_demo(membership.http)
    assert set(again.values()) == {0}
    assert await membership.outbox_count() == events
    assert (await membership.get("/figures"))["staff"] == figures["staff"]
