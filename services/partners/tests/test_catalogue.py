"""The public catalogue holds nothing personal: by field name, and by planted values."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

from distretto_shared.contracts import matchmaking as mm
from distretto_shared.contracts import membership as ms
from distretto_shared.contracts import newsletter as nl
from distretto_shared.contracts import projects as pj
from distretto_shared.contracts import public as pub
from partners import domain

# A field whose name says it holds a person (or a way to reach one) has no place in the catalogue.
PERSONAL_NAME = re.compile(
    r"(first|last|given|family|sur|middle|full|person|contact|user|owner)_?name|surname|person|people|contact|"
    r"e_?mail|phone|mobile|fax|telefono|cellulare|address|indirizzo|street|postcode|zip|birth|"
    r"tax_?code|codice_?fiscale|fiscal|iban|passport|gender|ip_?address|owner|author|signature|recipient",
    re.IGNORECASE,
)

PLANTED_EMAIL = "mario.rossi.planted@example.org"
PLANTED_PHONE = "+39 0577 123 4567"
PLANTED_NAME = "Mario Plantedrossi"


def _field_names(schema: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for sub in [schema, *schema.get("$defs", {}).values()]:
        names |= set(sub.get("properties", {}))
    return names


def test_no_public_type_has_a_field_that_could_hold_personal_data() -> None:
    offending = {
        cls.event_type: sorted(n for n in _field_names(cls.model_json_schema()) if PERSONAL_NAME.search(n))
        for cls in pub.PUBLIC_TYPES
    }
    assert {t: f for t, f in offending.items() if f} == {}


def test_the_field_name_check_catches_personal_fields() -> None:
    for name in ("contact_email", "phone", "first_name", "owner_organisation_id", "surname", "person_id"):
        assert PERSONAL_NAME.search(name), name
    for name in ("name", "kind", "sectors", "province", "size_class", "title", "acronym"):
        assert not PERSONAL_NAME.search(name), name


def test_every_public_type_is_versioned_and_on_a_public_topic() -> None:
    assert len(set(pub.PUBLIC_TYPE_NAMES)) == len(pub.PUBLIC_TYPES)
    for cls in pub.PUBLIC_TYPES:
        assert cls.event_type.startswith("distretto.public.") and cls.event_type.endswith(".v1")
        assert re.fullmatch(r"public\.[a-z]+\.v\d+", cls.topic), cls.topic


def test_scrub_removes_addresses_and_phone_numbers() -> None:
    text = f"Write to {PLANTED_EMAIL} or call {PLANTED_PHONE} (room 12, 2026)."
    out = domain.scrub(text)
    assert PLANTED_EMAIL not in out and "0577" not in out
    assert "room 12, 2026" in out


def _planted(value: str) -> bool:
    return any(p in value for p in (PLANTED_EMAIL, "0577 123", PLANTED_NAME))


def test_planted_personal_values_in_internal_events_do_not_reach_the_public_views() -> None:
    dirty = f"{PLANTED_NAME} <{PLANTED_EMAIL}>, tel. {PLANTED_PHONE}"
    profile = ms.OrganisationProfile(
        organisation_id="o1",
        name="Acme Bio S.r.l.",
        kind="company",
        sectors=["biotech"],
        vat_number="RSSMRA80A01H501U",
        city=dirty,
        website=f"https://example.org/{PLANTED_EMAIL}",
        description=dirty,
        competences=[dirty],
        keywords=[dirty],
        status="active",
    )
    summary = pj.ProjectSummary(
        project_id="p1",
        acronym="ACME",
        title=f"Project with {PLANTED_EMAIL}",
        status="SIGNED",
        objective=dirty,
        keywords=[PLANTED_PHONE],
    )
    views: list[Any] = [
        pub.OrganisationJoined(**domain.organisation_fields(profile), joined_on=date(2026, 1, 1)),
        domain.project_registered(summary),
        domain.deliverable_submitted(
            pj.DeliverableSubmitted(
                project_id="p1",
                deliverable_id="d1",
                number="D1.1",
                title=dirty,
                due_date=date(2026, 1, 1),
                submitted_on=date(2026, 1, 1),
            ),
            "ACME",
        ),
        domain.opportunity_published(
            mm.OpportunityPublished(
                opportunity_id="x1",
                opportunity_type="technology_offer",
                title=f"Offer, contact {PLANTED_EMAIL}",
                summary=dirty,
                keywords=[PLANTED_EMAIL],
                owner_organisation_id="o1",
            )
        ),
        domain.figures_changed(ms.DistrictFiguresChanged(computed_at=datetime.now(UTC), members_total=3)),
        domain.campaign_published(
            nl.CampaignPublished(
                campaign_id="c1",
                subject_line=f"News: write to {PLANTED_EMAIL}, tel. {PLANTED_PHONE}",
                web_url=f"https://news.example/{PLANTED_EMAIL}/issue?to={PLANTED_EMAIL}",
            )
        ),
    ]
    for view in views:
        text = json.dumps(view.model_dump(mode="json"))
        assert PLANTED_EMAIL not in text and "0577 123" not in text, (type(view).__name__, text)
        assert "RSSMRA80A01H501U" not in text
    opp = views[3]
    assert "owner_organisation_id" not in opp.model_dump()
    # The person's name in free text is the producers' to anonymise (matchmaking does); the fields
    # that carry only people (city, description, competences of a profile) are never copied.
    assert PLANTED_NAME not in json.dumps(views[0].model_dump(mode="json"))
