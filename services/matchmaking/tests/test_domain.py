"""Pure rules: the match lifecycle, type pairing, feedback, dates, anonymisation."""

from __future__ import annotations

from datetime import date

import pytest

from matchmaking.anonymise import anonymise_list, anonymise_text, brand_forms
from matchmaking.matches import domain
from matchmaking.matches.domain import Decision, MatchState, MatchStatus, Side
from matchmaking.opportunities import domain as opportunity_rules
from matchmaking.opportunities.domain import OpportunityType
from matchmaking.search import domain as ranking_rules

PROPOSED = MatchStatus(MatchState.PROPOSED, Decision.PENDING, Decision.PENDING)


def test_both_sides_must_accept_before_a_meeting() -> None:
    one = domain.decide(PROPOSED, Side.OPPORTUNITY, Decision.ACCEPTED)
    assert one.state is MatchState.PROPOSED
    with pytest.raises(domain.IllegalTransition):
        domain.schedule_meeting(one)
    both = domain.decide(one, Side.COUNTERPART, Decision.ACCEPTED)
    assert both.state is MatchState.ACCEPTED
    scheduled = domain.schedule_meeting(both)
    assert scheduled.state is MatchState.MEETING_SCHEDULED
    assert domain.hold_meeting(scheduled).state is MatchState.MEETING_HELD


def test_a_decline_by_either_side_ends_the_match() -> None:
    accepted_then_declined = domain.decide(
        domain.decide(PROPOSED, Side.COUNTERPART, Decision.ACCEPTED), Side.OPPORTUNITY, Decision.DECLINED
    )
    assert accepted_then_declined.state is MatchState.DECLINED
    with pytest.raises(domain.IllegalTransition):
        domain.decide(accepted_then_declined, Side.COUNTERPART, Decision.ACCEPTED)
    with pytest.raises(domain.IllegalTransition):
        domain.schedule_meeting(accepted_then_declined)


def test_a_side_answers_once_and_meetings_follow_the_order() -> None:
    one = domain.decide(PROPOSED, Side.OPPORTUNITY, Decision.ACCEPTED)
    with pytest.raises(domain.IllegalTransition):
        domain.decide(one, Side.OPPORTUNITY, Decision.DECLINED)
    with pytest.raises(domain.IllegalTransition):
        domain.hold_meeting(PROPOSED)


def test_type_pairing() -> None:
    assert ranking_rules.counterpart_types(OpportunityType.TECHNOLOGY_OFFER) == {OpportunityType.TECHNOLOGY_REQUEST}
    assert ranking_rules.counterpart_types(OpportunityType.BUSINESS_REQUEST) == {OpportunityType.BUSINESS_OFFER}
    assert ranking_rules.profile_kinds(OpportunityType.RD_REQUEST) == ranking_rules.RESEARCH_KINDS
    assert ranking_rules.profile_kinds(OpportunityType.PARTNER_SEARCH) is None
    university = ranking_rules.opportunity_types_for_organisation("university")
    assert OpportunityType.RD_REQUEST in university and OpportunityType.TECHNOLOGY_OFFER not in university
    assert OpportunityType.RD_REQUEST not in ranking_rules.opportunity_types_for_organisation("company")


def test_feedback_score_moves_the_pair_most_and_saturates() -> None:
    w = ranking_rules.FeedbackWeights(pair=0.25, counterpart=0.05)
    assert ranking_rules.feedback_score(1, 1, w) > ranking_rules.feedback_score(0, 1, w) > 0
    assert ranking_rules.feedback_score(-1, -1, w) < 0
    assert ranking_rules.feedback_score(5, 0, w) == ranking_rules.feedback_score(1, 0, w)
    assert ranking_rules.feedback_score(0, 1000, w) <= 0.05


def test_fusion_is_a_weighted_sum_with_negative_cosines_clipped() -> None:
    assert ranking_rules.fuse(1.0, 0.5, 0.4) == pytest.approx(0.4 + 0.6 * 0.5)
    assert ranking_rules.fuse(0.0, -0.3, 0.4) == 0.0


def test_add_months_clamps_to_month_end() -> None:
    assert opportunity_rules.add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert opportunity_rules.add_months(date(2025, 11, 15), 12) == date(2026, 11, 15)


PLANTED = (
    "Developed by Alpha Biotech S.r.l. with Nerviano Genomics. Contact Dr. Maria Rossi "
    "(maria.rossi@alphabio.it, +39 055 123 4567) or see https://www.alphabio.it/car-t and alphabio.com. "
    "Protected by patent EP 3 456 789 B1 and WO2019/123456; the process doubles CAR-T yield."
)


def test_anonymisation_removes_every_planted_identifier() -> None:
    clean = anonymise_text(PLANTED, names=["Nerviano Genomics"])
    for secret in (
        "Alpha Biotech",
        "S.r.l",
        "Nerviano",
        "Maria",
        "Rossi",
        "@",
        "055",
        "4567",
        "alphabio",
        "http",
        "3 456 789",
        "EP",
        "2019/123456",
    ):
        assert secret not in clean, (secret, clean)
    # The technical content stays readable.
    assert "the process doubles CAR-T yield" in clean
    assert "[person]" in clean and "[organisation]" in clean


def test_anonymised_lists_drop_values_that_were_only_a_name() -> None:
    assert anonymise_list(["Nerviano Genomics", "CAR-T", "info@x.eu"], names=["Nerviano Genomics"]) == ["CAR-T"]


def test_no_brand_left_behind_in_any_form() -> None:
    forms = brand_forms("CellForge Biotech S.r.l.", "https://www.cellforge.it/en")
    forms |= brand_forms("Istituto Toscano Tumori")
    forms |= brand_forms("Nerviano Genomics SpA")
    forms |= brand_forms("Alpha Biotech S.r.l.")
    planted = (
        "CellForge S.r.l. scales CAR-T; CELLFORGE's GMP suite and Cell Forge staff; see cellforge.it or "
        "CellForge-Biotech, srl. Cellforge Biotech SRL partners with the ITT (Istituto Toscano Tumori) and "
        "Nerviano. Alpha, spa, brings alpha-synuclein assays; ALPHA; cell-forge; CellForge Biotech Ltd."
    )
    clean = anonymise_text(planted, forms)
    for secret in (
        "CellForge",
        "cellforge",
        "CELLFORGE",
        "Cell Forge",
        "cell-forge",
        "S.r.l",
        "srl",
        "SRL",
        "spa",
        "Ltd",
        "ITT",
        "Istituto Toscano",
        "Nerviano",
        "Alpha,",
        "ALPHA",
    ):
        assert secret not in clean, (secret, clean)
    # What is not a name stays: the subject and an ordinary word that only looks like the brand.
    assert "scales CAR-T" in clean and "GMP suite" in clean and "alpha-synuclein assays" in clean
    # Generic words of a name are not taken for a brand on their own.
    assert brand_forms("Rare Tumours Foundation") == {
        "Rare Tumours Foundation",
        "RareTumoursFoundation",
        "Rare-Tumours-Foundation",
        "RTF",
    }
    assert anonymise_text("rare tumours of the eye", brand_forms("Rare Tumours Foundation")) == (
        "rare tumours of the eye"
    )
