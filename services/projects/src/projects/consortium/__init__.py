"""A project's consortium: participants, and the member organisations they are (fed by membership events)."""
