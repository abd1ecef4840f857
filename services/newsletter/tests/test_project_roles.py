"""Segment conditions on a project role: one spelling, lower snake case, the former ones still taken."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from distretto_shared.contracts import projects
from newsletter.segments import Condition


def test_a_condition_takes_the_former_spellings_and_keeps_the_current_one() -> None:
    cond = Condition(field="project", any_of=["EP PerMed"], project_role=["associatedPartner", "THIRD_PARTY"])
    assert cond.project_role == ["associated_partner", "third_party"]
    with pytest.raises(ValidationError):
        Condition(field="project", any_of=["EP PerMed"], project_role=["sponsor"])


def test_events_in_the_former_spelling_read_as_the_current_one() -> None:
    added = projects.ParticipantAdded(project_id="p1", participant_id="x", name="Lab", role="associatedPartner")
    changed = projects.ProjectStatusChanged(project_id="p1", old_status="SIGNED", new_status="CLOSED")
    summary = projects.ProjectSummary(project_id="p1", acronym="A", title="T", status="TERMINATED")
    assert (added.role, changed.old_status, changed.new_status, summary.status) == (
        "associated_partner",
        "signed",
        "closed",
        "terminated",
    )
