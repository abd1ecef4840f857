"""Event contracts, one module per producing service.

Importing this package registers every event type and every topic, so any
consumer can decode any Distretto event. Fields may be added (consumers ignore
unknown fields); renaming or removing one is a new version of the event.
"""

from distretto_shared.contracts import matchmaking, membership, newsletter, projects, public

__all__ = ["matchmaking", "membership", "newsletter", "projects", "public"]
