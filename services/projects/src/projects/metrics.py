"""Domain metrics of the projects service (the backbone's are in distretto_shared.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

from distretto_shared import metrics

PROJECTS_REGISTERED = Counter("distretto_projects_registered_total", "Projects registered by hand")
PARTICIPANTS_LINKED = Counter(
    "distretto_projects_participants_linked_total", "Participants recognised as member organisations"
)
DEADLINE_NOTICES = Counter("distretto_projects_deadline_notices_total", "Deadline notices emitted", ["kind"])
DEADLINE_NOTICES_RACED = Counter(
    "distretto_projects_deadline_notices_raced_total",
    "Deadline notices another instance emitted first (skipped here)",
)
IMPORTS = Counter("distretto_projects_cordis_imports_total", "CORDIS imports by outcome", ["outcome"])

# At zero from the first scrape, for the label values the code uses.
metrics.zero(DEADLINE_NOTICES, ("due_soon", "overdue"))
metrics.zero(IMPORTS, ("imported", "rejected"))
