"""What the search index keeps of one opportunity or competence profile, and which rows a query may return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from matchmaking.search.text import tokenize

FIELD_BOOST = {"title": 2, "keywords": 2}
"""Fields whose terms count twice in BM25 (a title or keyword match says more than one in a long text)."""


@dataclass
class Document:
    """What the index keeps of one opportunity or competence profile."""

    key: str
    """``opportunity:<id>`` or ``profile:<organisation id>``."""
    kind: str
    entity_id: str
    fields: dict[str, str]
    vector: np.ndarray
    opportunity_type: str | None = None
    org_kind: str | None = None
    sectors: tuple[str, ...] = ()
    country: str | None = None
    owner_id: str | None = None
    expires_on: date | None = None
    active: bool = True

    _field_terms: dict[str, frozenset[str]] | None = field(default=None, init=False, repr=False, compare=False)

    def field_terms(self) -> dict[str, frozenset[str]]:
        """The distinct terms of each field (worked out once, for explanations; fields are never edited)."""
        if self._field_terms is None:
            self._field_terms = {name: frozenset(tokenize(text)) for name, text in self.fields.items()}
        return self._field_terms

    def tokens(self) -> list[str]:
        """The BM25 terms of the document, boosted fields repeated."""
        out: list[str] = []
        for name, text in self.fields.items():
            out += tokenize(text) * FIELD_BOOST.get(name, 1)
        return out


@dataclass(frozen=True)
class Filter:
    """Which rows may be returned."""

    kind: str
    opportunity_types: frozenset[str] | None = None
    org_kinds: frozenset[str] | None = None
    sectors: frozenset[str] | None = None
    """Any overlap qualifies."""
    country: str | None = None
    exclude_owner: str | None = None
    exclude_key: str | None = None
    valid_on: date | None = None
    """Only active rows not expired on that day (None: every row)."""
    countries: frozenset[str] | None = None
