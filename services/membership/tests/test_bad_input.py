"""Bad input on every route: a 4xx whose message says what is wrong, and nothing written."""

from __future__ import annotations

from typing import Any

ORG = "{org}"
CONTACT = "{contact}"
APPLICANT = "{applicant}"

FIGURES = {"staff": 10, "rd_staff": 2, "turnover_eur": 1e6, "lab_m2": 50, "patents": 1}

# (method, path, json body or raw bytes, expected status, words the message must contain)
BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/organisations", {"kind": "company"}, 422, "name: Field required"),
    ("POST", "/organisations", {"name": "X"}, 422, "kind: Field required"),
    ("POST", "/organisations", {"name": "X", "kind": "spaceship"}, 422, "kind"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "sectors": ["genomics"]}, 422, "sectors.0"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "sectors": "biotech"}, 422, "sectors"),
    ("POST", "/organisations", {"name": "", "kind": "company"}, 422, "name"),
    ("POST", "/organisations", {"name": 42, "kind": "company"}, 422, "name"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "vat_number": "12345678901"}, 422, "check digit"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "vat_number": "IT123"}, 422, "11 digits"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "country": "ITA"}, 422, "country"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "province": "Firenze"}, 422, "two-letter"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "website": "not a site"}, 422, "website"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "ateco_code": "ABC"}, 422, "ATECO"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "keywords": [""]}, 422, "keywords.0"),
    ("POST", "/organisations", {"name": "X", "kind": "company", "colour": "red"}, 422, "colour: Extra inputs"),
    ("POST", "/organisations", b"{not json", 422, "JSON"),
    ("POST", "/organisations", [1, 2], 422, "body"),
    ("PATCH", f"/organisations/{ORG}", {"vat_number": "12345678900"}, 422, "check digit"),
    ("PATCH", f"/organisations/{ORG}", {"name": None}, 422, "name"),
    ("PATCH", f"/organisations/{ORG}", {"sectors": ["biotech", "astrology"]}, 422, "sectors.1"),
    ("PATCH", f"/organisations/{ORG}", {"province": "Pisa"}, 422, "two-letter"),
    ("PATCH", f"/organisations/{ORG}", {"status": "active"}, 422, "status: Extra inputs"),
    ("PATCH", "/organisations/nope", {"description": "x"}, 404, "organisation nope does not exist"),
    ("GET", "/organisations/nope", None, 404, "does not exist"),
    ("PUT", f"/organisations/{ORG}/figures/2024", {**FIGURES, "staff": -1}, 422, "staff"),
    ("PUT", f"/organisations/{ORG}/figures/2024", {**FIGURES, "turnover_eur": -5}, 422, "turnover_eur"),
    ("PUT", f"/organisations/{ORG}/figures/2024", {**FIGURES, "patents": -1}, 422, "patents"),
    ("PUT", f"/organisations/{ORG}/figures/2024", {**FIGURES, "lab_m2": -0.5}, 422, "lab_m2"),
    ("PUT", f"/organisations/{ORG}/figures/2024", {**FIGURES, "staff": 5, "rd_staff": 6}, 422, "cannot exceed staff"),
    ("PUT", f"/organisations/{ORG}/figures/2024", {**FIGURES, "staff": "many"}, 422, "staff"),
    ("PUT", f"/organisations/{ORG}/figures/2024", {"rd_staff": 1}, 422, "staff: Field required"),
    # PUT replaces the year's record: a partial body is refused, never read as zeros.
    ("PUT", f"/organisations/{ORG}/figures/2024", {"staff": 99}, 422, "turnover_eur: Field required"),
    ("PUT", f"/organisations/{ORG}/figures/1800", FIGURES, 422, "year"),
    ("PUT", f"/organisations/{ORG}/figures/next", FIGURES, 422, "year"),
    ("PUT", "/organisations/nope/figures/2024", FIGURES, 404, "does not exist"),
    ("POST", f"/organisations/{ORG}/approve", {"fee_plan_id": "nope"}, 409, "cannot approve"),
    ("POST", f"/organisations/{ORG}/approve", {"joined_on": "yesterday"}, 422, "joined_on"),
    ("POST", f"/organisations/{APPLICANT}/approve", {"fee_plan_id": "nope"}, 422, "fee plan nope does not exist"),
    ("POST", f"/organisations/{APPLICANT}/approve", {"fee_plan_id": "nope", "x": 1}, 422, "x: Extra inputs"),
    ("POST", f"/organisations/{ORG}/suspend", {"reason": 12}, 422, "reason"),
    ("POST", f"/organisations/{ORG}/renewals", {"amount_eur": -10}, 422, "amount_eur"),
    ("POST", f"/organisations/{ORG}/renewals", {"paid_on": "soon"}, 422, "paid_on"),
    ("POST", "/organisations/nope/leave", None, 404, "does not exist"),
    ("POST", "/organisations/nope/lapse", None, 404, "does not exist"),
    ("POST", f"/organisations/{APPLICANT}/lapse", None, 409, "cannot lapse a membership that is applied"),
    ("POST", f"/organisations/{ORG}/lapse", {"reason": ["x"]}, 422, "reason"),
    ("POST", "/fee-plans", {"name": "Plan", "amount_eur": -1}, 422, "amount_eur"),
    ("POST", "/fee-plans", {"name": "Plan", "amount_eur": 10, "period_months": 0}, 422, "period_months"),
    ("POST", "/fee-plans", {"amount_eur": 10}, 422, "name: Field required"),
    ("POST", "/fee-plans", {"name": "Socio ordinario", "amount_eur": 10}, 409, "already exists"),
    ("POST", f"/organisations/{ORG}/contacts", {"first_name": "A", "last_name": "B", "email": "nope"}, 422, "email"),
    ("POST", f"/organisations/{ORG}/contacts", {"first_name": "A", "email": "a@b.it"}, 422, "last_name"),
    (
        "POST",
        f"/organisations/{ORG}/contacts",
        {"first_name": "A", "last_name": "B", "email": "a@b.it", "phone": "call me"},
        422,
        "phone",
    ),
    (
        "POST",
        f"/organisations/{ORG}/contacts",
        {"first_name": "A", "last_name": "B", "email": "a@b.it", "consent_newsletter": "maybe"},
        422,
        "consent_newsletter",
    ),
    ("POST", "/organisations/nope/contacts", {"first_name": "A", "last_name": "B", "email": "a@b.it"}, 404, "nope"),
    ("PATCH", f"/contacts/{CONTACT}", {"email": "not-an-address"}, 422, "email"),
    ("PATCH", f"/contacts/{CONTACT}", {"first_name": None}, 422, "first_name"),
    ("PATCH", f"/contacts/{CONTACT}", {"email": "Mario.Bianchi@org.example"}, 200, ""),  # no change: allowed
    ("POST", "/contacts/nope/erase", None, 404, "does not exist"),
    ("GET", "/contacts/nope/export", None, 404, "does not exist"),
    ("GET", "/organisations?sector=genomics", None, 422, "sector"),
    ("GET", "/organisations?sort=turnover", None, 422, "sort: Input should be 'name', '-name', 'kind'"),
    ("GET", "/organisations?sort=name;drop", None, 422, "sort"),
    ("GET", "/organisations?sort=--name", None, 422, "sort"),
    ("GET", "/organisations?kind=shop", None, 422, "kind"),
    ("GET", "/organisations?limit=0", None, 422, "limit"),
    ("GET", "/organisations?limit=many", None, 422, "limit"),
    ("GET", "/organisations?offset=-1", None, 422, "offset"),
]


async def test_bad_input_is_refused_with_a_message_and_writes_nothing(membership: Any) -> None:
    org = await membership.create(vat_number=membership.valid_vat)
    plan = await membership.post("/fee-plans", {"name": "Socio ordinario", "amount_eur": 1000}, expect=201)
    await membership.post(f"/organisations/{org['id']}/approve", {"fee_plan_id": plan["id"]})
    contact = await membership.post(
        f"/organisations/{org['id']}/contacts",
        {"first_name": "Mario", "last_name": "Bianchi", "email": "Mario.Bianchi@org.example"},
        expect=201,
    )
    applicant = await membership.create(name="Applicant")
    response = await membership.http.put(f"/organisations/{org['id']}/figures/2024", json={**FIGURES, "staff": 12})
    assert response.status_code == 200
    before = await membership.register_snapshot()

    for method, template, body, status, words in BAD_REQUESTS:
        path = template.replace(ORG, org["id"]).replace(CONTACT, contact["id"]).replace(APPLICANT, applicant["id"])
        kwargs: dict[str, Any] = {}
        if isinstance(body, bytes):
            kwargs = {"content": body, "headers": {"content-type": "application/json"}}
        elif body is not None:
            kwargs = {"json": body}
        response = await membership.http.request(method, path, **kwargs)
        assert response.status_code == status, (method, path, body, response.text)
        if status >= 400:
            message = response.json()["message"]
            assert words in message, (method, path, body, message)

    assert await membership.register_snapshot() == before
