"""The register through its HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from distretto_dev.testing import identity_headers, service_client, wait_for
from distretto_shared.contracts import membership as contracts
from distretto_shared.identity import Principal, Role
from membership.app import create_app
from membership.config import Settings
from membership.lifecycle import service as lifecycle

FIGURES = {"staff": 10, "rd_staff": 0, "turnover_eur": 0, "lab_m2": 0, "patents": 0}
"""A year's whole record (PUT replaces it); tests override the fields they care about."""


async def test_create_read_update_an_organisation(membership: Any) -> None:
    created = await membership.create(vat_number="IT " + membership.valid_vat, province="si")
    assert created["status"] == "applied"
    assert created["vat_number"] == membership.valid_vat
    assert created["province"] == "SI"
    assert created["allowed_actions"] == ["approve", "reject", "leave"]
    got = await membership.get(f"/organisations/{created['id']}")
    assert got["name"] == "Biotecnologie Senesi S.r.l."
    assert got["sectors"] == ["biotech", "diagnostics"]

    response = await membership.http.patch(
        f"/organisations/{created['id']}", json={"description": "Antibodies", "sectors": ["pharma"]}
    )
    assert response.status_code == 200, response.text
    got = await membership.get(f"/organisations/{created['id']}")
    assert got["description"] == "Antibodies"
    assert got["sectors"] == ["pharma"]
    assert got["city"] == "Siena"

    # The same VAT number cannot be registered twice.
    duplicate = await membership.http.post("/organisations", json=membership.payload(vat_number=membership.valid_vat))
    assert duplicate.status_code == 409
    assert "already registered" in duplicate.json()["message"]
    assert (await membership.get("/organisations"))["total"] == 1


async def test_list_filters_and_pagination(membership: Any) -> None:
    await membership.create(name="Alfa Pharma", sectors=["pharma"], province="FI", city="Firenze")
    beta = await membership.create(name="Beta Devices", sectors=["medical_devices"], province="PI", city="Pisa")
    await membership.create(name="Università di Test", kind="university", sectors=[], province="PI", keywords=["AI"])
    await membership.create(name="Gamma Nutra", sectors=["nutraceutics", "cosmeceutics"], province="SI")
    await membership.post(f"/organisations/{beta['id']}/approve")
    response = await membership.http.put(
        f"/organisations/{beta['id']}/figures/2024", json={**FIGURES, "staff": 30, "rd_staff": 4, "turnover_eur": 4e6}
    )
    assert response.status_code == 200, response.text

    async def names(**params: Any) -> list[str]:
        page = await membership.get("/organisations", **params)
        return [o["name"] for o in page["items"]]

    assert await names(kind="university") == ["Università di Test"]
    assert await names(sector="cosmeceutics") == ["Gamma Nutra"]
    assert await names(sector="pharma") == ["Alfa Pharma"]
    assert await names(status="active") == ["Beta Devices"]
    assert await names(province="pi") == ["Beta Devices", "Università di Test"]
    assert await names(size_class="small") == ["Beta Devices"]
    assert await names(q="nutra") == ["Gamma Nutra"]
    assert await names(q="firenze") == ["Alfa Pharma"]
    assert await names(q="ai", kind="university") == ["Università di Test"]
    assert await names(q="100%") == []

    first = await membership.get("/organisations", limit=2, offset=0)
    second = await membership.get("/organisations", limit=2, offset=2)
    assert first["total"] == second["total"] == 4
    assert [o["name"] for o in first["items"] + second["items"]] == [
        "Alfa Pharma",
        "Beta Devices",
        "Gamma Nutra",
        "Università di Test",
    ]
    one = await membership.get(f"/organisations/{beta['id']}")
    assert one["size_class"] == "small"
    assert one["latest_figures"]["staff"] == 30


async def test_sort_runs_over_the_whole_register_not_one_page(membership: Any) -> None:
    """Sorting a column orders all pages together: page 2 continues where page 1 stopped."""
    made = [
        await membership.create(name="delta Bio", kind="university", province="SI"),
        await membership.create(name="Alfa Pharma", kind="company", province="PI"),
        await membership.create(name="Epsilon Lab", kind="hospital", province=None),
        await membership.create(name="beta Devices", kind="company", province="FI"),
        await membership.create(name="Gamma Nutra", kind="company", province="AR"),
    ]
    await membership.post(f"/organisations/{made[2]['id']}/approve")
    await membership.post(f"/organisations/{made[0]['id']}/approve")

    async def all_pages(sort: str, **params: Any) -> list[str]:
        names: list[str] = []
        offset, total = 0, 1
        while offset < total:
            page = await membership.get("/organisations", sort=sort, limit=2, offset=offset, **params)
            total, offset = page["total"], offset + 2
            names += [o["name"] for o in page["items"]]
        assert len(names) == total
        return names

    assert await all_pages("name") == ["Alfa Pharma", "beta Devices", "delta Bio", "Epsilon Lab", "Gamma Nutra"]
    assert await all_pages("-name") == ["Gamma Nutra", "Epsilon Lab", "delta Bio", "beta Devices", "Alfa Pharma"]
    # Ties (three companies) by name; organisations without a province last in both directions.
    assert await all_pages("kind") == ["Alfa Pharma", "beta Devices", "Gamma Nutra", "Epsilon Lab", "delta Bio"]
    assert await all_pages("province") == ["Gamma Nutra", "beta Devices", "Alfa Pharma", "delta Bio", "Epsilon Lab"]
    assert await all_pages("-province") == ["delta Bio", "Alfa Pharma", "beta Devices", "Gamma Nutra", "Epsilon Lab"]
    assert await all_pages("-status") == ["Alfa Pharma", "beta Devices", "Gamma Nutra", "delta Bio", "Epsilon Lab"]
    # Filters and sort together.
    assert await all_pages("-name", kind="company") == ["Gamma Nutra", "beta Devices", "Alfa Pharma"]
    # Only the two approved ones have a joined_on date; the others follow, by name.
    joined = await all_pages("joined_on")
    assert set(joined[:2]) == {"delta Bio", "Epsilon Lab"}
    assert joined[2:] == ["Alfa Pharma", "beta Devices", "Gamma Nutra"]

    wrong = await membership.http.get("/organisations", params={"sort": "turnover"})
    assert wrong.status_code == 422
    assert "sort" in wrong.json()["message"] and "'-name'" in wrong.json()["message"]


async def test_yearly_figures_derive_the_size_class(membership: Any) -> None:
    org = await membership.create()
    path = f"/organisations/{org['id']}/figures"
    for year, staff, turnover in [(2022, 8, 1.5e6), (2023, 60, 12e6)]:
        response = await membership.http.put(
            f"{path}/{year}", json={**FIGURES, "staff": staff, "rd_staff": 3, "turnover_eur": turnover, "lab_m2": 120.5}
        )
        assert response.status_code == 200, response.text
    assert [(f["year"], f["size_class"]) for f in await membership.get(path)] == [(2023, "medium"), (2022, "micro")]
    assert (await membership.get(f"/organisations/{org['id']}"))["size_class"] == "medium"
    # Correcting an older year does not change the class, which follows the latest year.
    await membership.http.put(f"{path}/2022", json={**FIGURES, "staff": 400, "turnover_eur": 9e7})
    assert (await membership.get(f"/organisations/{org['id']}"))["size_class"] == "medium"
    await membership.http.put(f"{path}/2023", json={**FIGURES, "staff": 9, "turnover_eur": 2e6})
    assert (await membership.get(f"/organisations/{org['id']}"))["size_class"] == "micro"

    # Institutions are not enterprises: no EU size class.
    uni = await membership.create(name="Università", kind="university")
    await membership.http.put(
        f"/organisations/{uni['id']}/figures/2023", json={**FIGURES, "staff": 3000, "turnover_eur": 4e8}
    )
    assert (await membership.get(f"/organisations/{uni['id']}"))["size_class"] is None


# -- The lifecycle, every action from every status, through the API ---------------

HTTP_ACTIONS = ["approve", "reject", "suspend", "reinstate", "lapse", "renew", "leave"]
EXPECTED = {
    ("applied", "approve"): "active",
    ("applied", "reject"): "rejected",
    ("applied", "leave"): "left",
    ("active", "suspend"): "suspended",
    ("active", "lapse"): "lapsed",
    ("active", "renew"): "active",
    ("active", "leave"): "left",
    ("suspended", "reinstate"): "active",
    ("suspended", "leave"): "left",
    ("lapsed", "renew"): "active",
    ("lapsed", "leave"): "left",
    ("rejected", "leave"): "left",
}


async def _org_in(membership: Any, status: str, name: str) -> str:
    """An organisation brought to ``status`` through the API (and the lapse scan)."""
    org = await membership.create(name=name)
    oid = org["id"]
    joined = (datetime.now(UTC).date() - timedelta(days=800)).isoformat() if status == "lapsed" else None
    steps = {
        "applied": [],
        "active": ["approve"],
        "rejected": ["reject"],
        "suspended": ["approve", "suspend"],
        "lapsed": ["approve"],
        "left": ["leave"],
    }[status]
    for step in steps:
        body = {"joined_on": joined} if step == "approve" and joined else None
        await membership.post(f"/organisations/{oid}/{step}", json=body)
    if status == "lapsed":
        assert oid in await lifecycle.lapse_overdue(membership.ctx)
    assert (await membership.get(f"/organisations/{oid}"))["status"] == status
    return oid


@pytest.mark.parametrize("status", ["applied", "active", "rejected", "suspended", "lapsed", "left"])
async def test_every_action_from(membership: Any, status: str) -> None:
    for action in HTTP_ACTIONS:
        oid = await _org_in(membership, status, f"{status} {action}")
        before = await membership.get(f"/organisations/{oid}")
        history = await membership.get(f"/organisations/{oid}/history")
        events = await membership.outbox_count()
        path = f"/organisations/{oid}/renewals" if action == "renew" else f"/organisations/{oid}/{action}"
        response = await membership.http.post(path, json=None)
        after = await membership.get(f"/organisations/{oid}")
        if (status, action) in EXPECTED:
            assert response.status_code in (200, 201), (status, action, response.text)
            assert after["status"] == EXPECTED[(status, action)]
            # One event per status change, and every renewal says so (an active member's changes no status).
            expected = (0 if status == after["status"] else 1) + (1 if action == "renew" else 0)
            assert await membership.outbox_count() == events + expected
            if action == "renew":
                assert (await membership.outbox_types())[-1] == contracts.OrganisationRenewed.event_type
        else:
            assert response.status_code == 409, (status, action, response.text)
            body = response.json()
            assert body["error"] == "conflict"
            assert f"cannot {action} a membership that is {status}" in body["message"]
            assert after == before
            assert await membership.get(f"/organisations/{oid}/history") == history
            assert await membership.outbox_count() == events
            assert (await membership.get(f"/organisations/{oid}/renewals"))["total"] == 0


async def test_lapse_scan_lapses_only_overdue_active_members(membership: Any) -> None:
    today = datetime.now(UTC).date()
    plan = await membership.post(
        "/fee-plans", {"name": "Impresa", "amount_eur": 1500, "period_months": 12, "grace_days": 10}, expect=201
    )
    overdue = await membership.create(name="Overdue")
    in_grace = await membership.create(name="In grace")
    suspended = await membership.create(name="Suspended")
    await membership.post(
        f"/organisations/{overdue['id']}/approve",
        {"fee_plan_id": plan["id"], "joined_on": (today - timedelta(days=365 + 11)).isoformat()},
    )
    await membership.post(
        f"/organisations/{in_grace['id']}/approve",
        {"fee_plan_id": plan["id"], "joined_on": (today - timedelta(days=365 + 5)).isoformat()},
    )
    await membership.post(
        f"/organisations/{suspended['id']}/approve", {"joined_on": (today - timedelta(days=800)).isoformat()}
    )
    await membership.post(f"/organisations/{suspended['id']}/suspend", {"reason": "unpaid"})

    assert await lifecycle.lapse_overdue(membership.ctx) == [overdue["id"]]
    statuses = {o["name"]: o["status"] for o in (await membership.get("/organisations"))["items"]}
    assert statuses == {"Overdue": "lapsed", "In grace": "active", "Suspended": "suspended"}
    assert await lifecycle.lapse_overdue(membership.ctx) == []

    # Paying brings it back, for a new period from the day of payment, at the plan's price.
    renewal = await membership.post(f"/organisations/{overdue['id']}/renewals", {}, expect=201)
    assert renewal["amount_eur"] == 1500
    assert renewal["period_start"] == today.isoformat()
    back = await membership.get(f"/organisations/{overdue['id']}")
    assert back["status"] == "active"
    assert back["renewal_due"] == renewal["period_end"]
    history = await membership.get(f"/organisations/{overdue['id']}/history")
    assert [(h["action"], h["to_status"]) for h in history["items"]] == [
        ("approve", "active"),
        ("lapse", "lapsed"),
        ("renew", "active"),
    ]


async def test_the_scheduled_scan_lapses_members(settings: Settings) -> None:
    fast = settings.model_copy(update={"lapse_check_interval": 0.2})
    app = create_app(fast)
    async with service_client(app) as http:
        org = (await http.post("/organisations", json={"name": "Late payer", "kind": "company"})).json()
        joined = (datetime.now(UTC).date() - timedelta(days=500)).isoformat()
        assert (await http.post(f"/organisations/{org['id']}/approve", json={"joined_on": joined})).status_code == 200

        async def lapsed() -> bool:
            return (await http.get(f"/organisations/{org['id']}")).json()["status"] == "lapsed"

        await wait_for(lapsed, timeout=20, what="the periodic scan to lapse the member")


async def test_active_member_renewing_early_extends_its_period(membership: Any) -> None:
    org = await membership.create()
    joined = date(2025, 3, 1)
    await membership.post(f"/organisations/{org['id']}/approve", {"joined_on": joined.isoformat()})
    assert (await membership.get(f"/organisations/{org['id']}"))["renewal_due"] == "2026-03-01"
    renewal = await membership.post(
        f"/organisations/{org['id']}/renewals", {"paid_on": "2026-02-01", "amount_eur": 800}, expect=201
    )
    assert (renewal["period_start"], renewal["period_end"], renewal["amount_eur"]) == ("2026-03-01", "2027-03-01", 800)
    assert (await membership.get(f"/organisations/{org['id']}"))["renewal_due"] == "2027-03-01"
    assert (await membership.get(f"/organisations/{org['id']}/renewals"))["total"] == 1


# -- Contacts --------------------------------------------------------------------


async def test_contacts_consent_and_erasure(membership: Any) -> None:
    org = await membership.create()
    contact = await membership.post(
        f"/organisations/{org['id']}/contacts",
        {
            "first_name": "Anna",
            "last_name": "Rossi",
            "email": "Anna.Rossi@biosenesi.example",
            "role": "CEO",
            "phone": "+39 0577 123456",
            "consent_newsletter": True,
            "consent_source": "web form",
        },
        expect=201,
    )
    assert contact["consent_newsletter_source"] == "web form"
    assert contact["consent_newsletter_at"] is not None
    assert contact["consent_data_processing"] is False and contact["consent_data_processing_at"] is None

    same_email = await membership.http.post(
        f"/organisations/{org['id']}/contacts",
        json={"first_name": "A", "last_name": "R", "email": "anna.rossi@BIOSENESI.example"},
    )
    assert same_email.status_code == 409

    response = await membership.http.patch(
        f"/contacts/{contact['id']}", json={"consent_data_processing": True, "consent_source": "paper form"}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["consent_data_processing_source"] == "paper form"
    assert updated["consent_newsletter_source"] == "web form"  # untouched consent keeps its record

    newsletter = await membership.get("/contacts", consent_newsletter=True)
    assert [c["email"] for c in newsletter["items"]] == ["Anna.Rossi@biosenesi.example"]

    erased = await membership.post(f"/contacts/{contact['id']}/erase")
    assert erased["erased_at"] is not None
    assert (erased["first_name"], erased["last_name"], erased["email"], erased["phone"]) == ("", "", None, None)
    assert erased["consent_newsletter"] is False
    stored = await membership.get(f"/contacts/{contact['id']}")
    assert "Anna" not in str(stored) and "rossi" not in str(stored).lower()
    assert (await membership.get(f"/organisations/{org['id']}/contacts"))["total"] == 0
    assert (await membership.http.post(f"/contacts/{contact['id']}/erase")).status_code == 409
    assert (await membership.http.patch(f"/contacts/{contact['id']}", json={"role": "CFO"})).status_code == 409


# -- District figures and metrics ------------------------------------------------------


async def test_district_figures_and_metrics(membership: Any) -> None:
    joins_before = await membership.metric(
        "distretto_membership_transitions_total", from_status="applied", to_status="active"
    )
    a = await membership.create(name="A", sectors=["biotech", "pharma"])
    b = await membership.create(name="B", sectors=["biotech"])
    u = await membership.create(name="U", kind="university", sectors=[])
    await membership.create(name="Applicant", sectors=["pharma"])
    for org, staff, turnover in [(a, 120, 30e6), (b, 5, 1e6), (u, 3000, 0)]:
        await membership.post(f"/organisations/{org['id']}/approve")
        await membership.http.put(
            f"/organisations/{org['id']}/figures/2024",
            json={"staff": staff, "rd_staff": staff // 10, "turnover_eur": turnover, "lab_m2": 100, "patents": 2},
        )
    await membership.http.put(
        f"/organisations/{a['id']}/figures/2023", json={**FIGURES, "staff": 999, "turnover_eur": 9e9}
    )

    figures = await membership.get("/figures")
    assert figures["members_total"] == 3
    assert figures["by_status"] == {"active": 3, "applied": 1}
    assert figures["by_kind"] == {"company": 2, "university": 1}
    assert figures["by_sector"] == {"biotech": 2, "pharma": 1}
    assert figures["by_size_class"] == {"medium": 1, "micro": 1}
    assert figures["companies"] == 2
    assert (figures["year"], figures["staff"], figures["rd_staff"]) == (2024, 3125, 312)
    assert (figures["turnover_eur"], figures["lab_m2"], figures["patents"]) == (31e6, 300, 6)

    assert await membership.metric("distretto_membership_members", status="active", kind="company") == 2
    assert await membership.metric("distretto_membership_members", status="applied", kind="company") == 1
    joins = await membership.metric("distretto_membership_transitions_total", from_status="applied", to_status="active")
    assert joins - joins_before == 3


async def test_personal_data_is_for_the_newsletter_service_and_staff_only(membership: Any) -> None:
    from distretto_dev.testing import KEYRING, identity_headers
    from distretto_shared.identity import Principal, Role

    org = await membership.create(name="Privacy Org")
    contact = await membership.post(
        f"/organisations/{org['id']}/contacts",
        {"first_name": "Pia", "last_name": "Neri", "email": "pia.neri@privacy.example", "phone": "+39 055 1234567"},
        expect=201,
    )
    url = f"/contacts/{contact['id']}/personal-data"
    as_newsletter = KEYRING.signer("newsletter").service_headers("membership")
    r = await membership.http.get(url, headers=as_newsletter)
    assert r.status_code == 200, r.text
    assert (r.json()["email"], r.json()["last_name"]) == ("pia.neri@privacy.example", "Neri")
    assert (await membership.http.get(url)).status_code == 200  # staff (the client's admin)

    refused = {
        "member of the organisation": identity_headers(
            Principal(id="user:m", role=Role.MEMBER, organisation_id=org["id"]), "membership"
        ),
        "partner": identity_headers(Principal(id="apikey:p", role=Role.PARTNER), "membership"),
        "another service": KEYRING.signer("matchmaking").service_headers("membership"),
    }
    for who, headers in refused.items():
        r = await membership.http.get(url, headers=headers)
        assert r.status_code == 403, (who, r.text)
        assert "pia.neri" not in r.text
    # The gateway's key cannot assert the newsletter service: only the newsletter's own key can.
    forged = identity_headers(Principal(id="service:newsletter", role=Role.SERVICE), "membership")
    assert (await membership.http.get(url, headers=forged)).status_code == 401

    # Erased: the newsletter learns it is gone (404) and gets nothing.
    await membership.post(f"/contacts/{contact['id']}/erase")
    r = await membership.http.get(url, headers=as_newsletter)
    assert r.status_code == 404 and "pia.neri" not in r.text


async def test_staff_can_lapse_an_active_member_and_a_renewal_brings_it_back(membership: Any) -> None:
    org = await membership.create(name="Will not pay")
    oid = org["id"]
    await membership.post(f"/organisations/{oid}/approve")
    assert "lapse" in (await membership.get(f"/organisations/{oid}"))["allowed_actions"]
    events = await membership.outbox_count()

    lapsed = await membership.post(f"/organisations/{oid}/lapse", {"reason": "payment refused by the bank"})
    assert lapsed["status"] == "lapsed"
    assert lapsed["allowed_actions"] == ["renew", "leave"]
    assert (await membership.outbox_types())[events:] == [contracts.OrganisationLapsed.event_type]
    history = await membership.get(f"/organisations/{oid}/history")
    assert (history["items"][-1]["action"], history["items"][-1]["reason"]) == ("lapse", "payment refused by the bank")
    again = await membership.http.post(f"/organisations/{oid}/lapse")
    assert again.status_code == 409 and "allowed from lapsed: renew, leave" in again.json()["message"]

    # A member cannot lapse itself (staff decides), not even its own organisation.
    await membership.post(f"/organisations/{oid}/renewals", {}, expect=201)
    me = identity_headers(Principal(id="user:m", role=Role.MEMBER, organisation_id=oid), "membership")
    assert (await membership.http.post(f"/organisations/{oid}/lapse", headers=me)).status_code == 403
    assert (await membership.get(f"/organisations/{oid}"))["status"] == "active"


async def test_a_figures_put_with_one_field_is_refused_and_zeroes_nothing(membership: Any) -> None:
    org = await membership.create()
    path = f"/organisations/{org['id']}/figures/2024"
    full = {"staff": 40, "rd_staff": 8, "turnover_eur": 5e6, "lab_m2": 300, "patents": 6}
    assert (await membership.http.put(path, json=full)).status_code == 200
    events = await membership.outbox_count()

    partial = await membership.http.put(path, json={"staff": 41})
    assert partial.status_code == 422
    message = partial.json()["message"]
    for missing in ("rd_staff", "turnover_eur", "lab_m2", "patents"):
        assert f"{missing}: Field required" in message, message
    stored = (await membership.get(f"/organisations/{org['id']}/figures"))[0]
    assert {k: stored[k] for k in full} == full
    assert await membership.outbox_count() == events


async def test_gdpr_export_of_a_contact_is_everything_held_for_staff_and_its_own_members(membership: Any) -> None:
    org = await membership.create(name="Export Org")
    other = await membership.create(name="Other Org")
    contact = await membership.post(
        f"/organisations/{org['id']}/contacts",
        {
            "first_name": "Lia",
            "last_name": "Verdi",
            "email": "lia.verdi@export.example",
            "phone": "+39 050 7654321",
            "role": "CFO",
            "consent_newsletter": True,
            "consent_source": "paper form 2026",
        },
        expect=201,
    )
    url = f"/contacts/{contact['id']}/export"
    response = await membership.http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    export = response.json()
    assert export["format"] == "distretto.membership.contact-export.v1"
    assert export["organisation"] == {"id": org["id"], "name": "Export Org"}
    held = export["contact"]
    assert held == await membership.get(f"/contacts/{contact['id']}")  # every field the register keeps
    assert (held["first_name"], held["email"], held["phone"], held["role"]) == (
        "Lia",
        "lia.verdi@export.example",
        "+39 050 7654321",
        "CFO",
    )
    assert held["consent_newsletter"] is True and held["consent_newsletter_source"] == "paper form 2026"
    assert held["consent_newsletter_at"].endswith(("Z", "+00:00"))
    shared = export["shared_with_other_services"]["fields"]
    assert shared["consent_newsletter"] is True and "lia" not in str(shared).lower()

    def member_of(organisation_id: str) -> dict[str, str]:
        return identity_headers(Principal(id="user:m", role=Role.MEMBER, organisation_id=organisation_id), "membership")

    own = await membership.http.get(url, headers=member_of(org["id"]))
    assert own.status_code == 200 and own.json()["contact"]["email"] == "lia.verdi@export.example"
    partner = identity_headers(Principal(id="apikey:p", role=Role.PARTNER), "membership")
    for headers in (member_of(other["id"]), partner):
        refused = await membership.http.get(url, headers=headers)
        assert refused.status_code == 404 and "lia" not in refused.text.lower()
    anonymous = identity_headers(Principal(id="anonymous", role=Role.ANONYMOUS), "membership")
    assert (await membership.http.get(url, headers=anonymous)).status_code == 401

    # After erasure the export shows what is left: nothing personal.
    await membership.post(f"/contacts/{contact['id']}/erase")
    after = (await membership.http.get(url)).json()
    assert "lia" not in str(after).lower() and "7654321" not in str(after)
    assert after["contact"]["erased_at"] is not None and after["shared_with_other_services"] == {}


async def test_a_nul_character_in_text_is_the_callers_error_never_a_crash(membership: Any) -> None:
    """PostgreSQL cannot store a NUL in text: the caller gets a 422 in the one error shape (SQLite
    stores it as given); the record is left as it was."""
    created = await membership.create(province="si")
    for response in (
        await membership.http.patch(f"/organisations/{created['id']}", json={"description": "a\u0000b"}),
        await membership.http.get("/organisations", params={"q": "a\u0000b"}),
    ):
        if not membership.ctx.db.sqlite:
            assert response.status_code == 422, response.text
            assert response.json()["error"] == "validation_error" and "NUL" in response.json()["message"]
        else:
            assert response.status_code == 200, response.text
    if not membership.ctx.db.sqlite:
        assert (await membership.get(f"/organisations/{created['id']}"))["description"] == created["description"]
