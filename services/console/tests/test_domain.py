"""Pure rules of the console: navigation per role, events in words, errors next to fields, languages."""

from __future__ import annotations

from console import domain


def test_each_role_sees_only_its_navigation() -> None:
    paths = {role: {i.path for i in domain.navigation(role)} for role in ("admin", "staff", "member", "partner", None)}
    assert "/admin" in paths["admin"] and "/admin" not in paths["staff"]
    assert "/newsletter" in paths["staff"] and "/newsletter" not in paths["member"]
    assert "/matchmaking" in paths["member"] and "/matchmaking" not in paths["partner"]
    assert paths[None] == {"/public", "/public/newsletter"}
    assert domain.may_open("member", "/members/abc") and not domain.may_open("member", "/newsletter/campaigns")
    assert not domain.may_open("staff", "/admin/keys") and domain.may_open("admin", "/admin/keys")
    assert domain.may_open(None, "/public/newsletter")


def test_events_are_told_in_plain_words_per_language() -> None:
    it = {"%(name)s joined": "%(name)s è entrata nel distretto"}
    assert (
        domain.describe("organisation.joined", {"name": "CellForge S.r.l."}, lambda s: s) == "CellForge S.r.l. joined"
    )
    assert (
        domain.describe("organisation.joined", {"name": "CellForge S.r.l."}, lambda s: it.get(s, s))
        == "CellForge S.r.l. è entrata nel distretto"
    )
    assert (
        domain.describe("deliverable.overdue", {"number": "D3.2", "acronym": "MammoScreen"}, lambda s: s)
        == "D3.2 of MammoScreen is overdue"
    )
    # a missing parameter or an unknown kind never breaks the feed
    assert domain.describe("deliverable.overdue", {}, lambda s: s) == "%(number)s of %(acronym)s is overdue"
    assert domain.describe("something.new", {"x": 1}, lambda s: s) == "something.new"


def test_validation_errors_land_next_to_their_fields() -> None:
    body = {
        "error": "validation_error",
        "message": "body.name: too short; body.country: bad",
        "detail": [
            {"loc": ["body", "name"], "msg": "String should have at least 1 character"},
            {"loc": ["body", "country"], "msg": "Value error, country must be a two-letter ISO 3166 code such as IT"},
            {"loc": ["body", "sectors", 0], "msg": "Input should be 'biotech'"},
            {"loc": ["body"], "msg": "R&D staff (5) cannot exceed staff (3)"},
        ],
    }
    fields, general = domain.field_errors(body)
    assert fields == {
        "name": "String should have at least 1 character",
        "country": "country must be a two-letter ISO 3166 code such as IT",
        "sectors": "Input should be 'biotech'",
    }
    assert general == "R&D staff (5) cannot exceed staff (3)"
    assert domain.field_errors({"error": "conflict", "message": "VAT already registered"}) == (
        {},
        "VAT already registered",
    )
    assert domain.field_errors("not json") == ({}, "")


def test_language_follows_the_browser_by_weight() -> None:
    assert domain.negotiate_language("en-GB,en;q=0.9,it;q=0.8", ["it", "en"], "it") == "en"
    assert domain.negotiate_language("fr-FR,it;q=0.5,en;q=0.4", ["it", "en"], "it") == "it"
    assert domain.negotiate_language("de, en;q=0.1, it;q=0.7", ["it", "en"], "en") == "it"
    assert domain.negotiate_language("de", ["it", "en"], "it") == "it"
    assert domain.negotiate_language(None, ["it", "en"], "en") == "en"
    assert domain.negotiate_language("en;q=abc, it", ["it", "en"], "en") == "it"


def test_sorting_paging_and_lists() -> None:
    assert domain.sort_param("province", True, ["name", "province"]) == "-province"
    assert domain.sort_param("name", False, ["name", "province"]) == "name"
    assert domain.sort_param("turnover); drop", True, ["name", "province"]) == "-name"
    assert domain.pages(51, 25, 25) == {"page": 2, "pages": 3, "previous": 0, "next": 50}
    assert domain.pages(0, 25, 0) == {"page": 1, "pages": 1, "previous": None, "next": None}
    assert domain.split_list("cell therapy, CAR-T; oncology\ncell therapy") == ["cell therapy", "CAR-T", "oncology"]
    assert domain.project_month_bar(1, 48) == 1.04 and domain.project_month_bar(60, 48) == 100.0
    assert domain.label("research_institute", "it") == "Istituto di ricerca"
    assert domain.label("research_institute", "en") == "Research institute" and domain.label("x", "en") == "x"


def test_a_segment_rule_from_the_form_and_back() -> None:
    rows = [
        domain.RuleRow("sector", "any_of", "pharma, biotech; devices"),
        domain.RuleRow("province", "none_of", "LU"),
        domain.RuleRow("", "any_of", "ignored: no attribute"),
        domain.RuleRow("keyword", "all_of", "  "),  # no value: left out
    ]
    rule = domain.rule_from_rows("any", rows)
    assert rule == {
        "any": [
            {"field": "sector", "any_of": ["pharma", "biotech", "devices"]},
            {"field": "province", "none_of": ["LU"]},
        ]
    }
    assert domain.rule_from_rows("all", [domain.RuleRow("kind", "any_of", "")]) is None
    assert domain.rule_from_rows("sometimes", rows[:1]) == {
        "all": [{"field": "sector", "any_of": ["pharma", "biotech", "devices"]}]
    }
    # back on the form: one group of conditions; a single condition as a group of one
    assert domain.rows_from_rule(rule) == (
        "any",
        [domain.RuleRow("sector", "any_of", "pharma, biotech, devices"), domain.RuleRow("province", "none_of", "LU")],
    )
    assert domain.rows_from_rule({"field": "status", "any_of": ["active"]}) == (
        "all",
        [domain.RuleRow("status", "any_of", "active")],
    )
    # what one group of conditions cannot show: the form shows the JSON instead
    nested = {"all": [{"field": "sector", "any_of": ["pharma"]}, {"none": [{"field": "province", "any_of": ["LU"]}]}]}
    assert domain.rows_from_rule(nested) is None
    assert (
        domain.rows_from_rule({"all": [{"field": "project", "any_of": ["X"], "project_role": ["coordinator"]}]}) is None
    )
    assert domain.rows_from_rule({"all": [], "any": []}) is None
    assert domain.rows_from_rule("not a rule") is None
