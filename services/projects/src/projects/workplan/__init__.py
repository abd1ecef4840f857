"""A project's work plan: work packages, deliverables, milestones, reporting periods."""
