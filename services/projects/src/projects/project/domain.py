"""Pure rules of a project's status."""

from __future__ import annotations

from projects.vocabulary import DomainRuleError, ProjectStatus

FINAL_PROJECT_STATUSES = frozenset({ProjectStatus.CLOSED, ProjectStatus.TERMINATED})

_PROJECT_TRANSITIONS: dict[ProjectStatus, frozenset[ProjectStatus]] = {
    ProjectStatus.PLANNED: frozenset({ProjectStatus.ONGOING, ProjectStatus.SIGNED, ProjectStatus.TERMINATED}),
    ProjectStatus.ONGOING: frozenset({ProjectStatus.SIGNED, ProjectStatus.CLOSED, ProjectStatus.TERMINATED}),
    ProjectStatus.SIGNED: frozenset({ProjectStatus.ONGOING, ProjectStatus.CLOSED, ProjectStatus.TERMINATED}),
    ProjectStatus.CLOSED: frozenset(),
    ProjectStatus.TERMINATED: frozenset(),
}


def check_project_transition(old: ProjectStatus, new: ProjectStatus) -> None:
    """Raise unless a project may go from ``old`` to ``new`` (closed and terminated are final)."""
    if old != new and new not in _PROJECT_TRANSITIONS[old]:
        raise DomainRuleError(f"a project cannot go from {old.value} to {new.value}")
