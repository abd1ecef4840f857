"""The service's one metadata: ``Base`` and every aggregate's tables (what the migrations compare with)."""

from matchmaking.matches.models import Match, MatchFeedback
from matchmaking.opportunities.models import Opportunity
from matchmaking.profiles.models import Organisation, Participation, Project
from matchmaking.search.store import EncodeQueue, IndexChange, IndexItem, TextVector
from matchmaking.tables import Base

__all__ = [
    "Base",
    "EncodeQueue",
    "IndexChange",
    "IndexItem",
    "Match",
    "MatchFeedback",
    "Opportunity",
    "Organisation",
    "Participation",
    "Project",
    "TextVector",
]
