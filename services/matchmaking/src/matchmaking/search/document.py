"""What the search index keeps of one opportunity or competence profile, and which rows a query may return.

A document is searched two ways: BM25 over its ``fields`` (one row per
document), and by meaning over its **items** — the facets that each say one
thing about it, embedded one by one:

- a competence profile: the organisation's description, its competences and
  keywords, each project it takes part in (title and objective), each
  opportunity it published;
- an opportunity: its title, keywords and summary.

Long texts are cut into chunks at sentence boundaries (``CHUNK_WORDS`` words at
most, a sentence longer than that at word boundaries), never truncated: every
word of a description reaches the dense side. A document's dense score
aggregates its items' cosines (see ``engine.aggregate``) and the explanation
names the item that matched best.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from matchmaking.search.text import DEFAULT_LANGUAGE, analyse, detect_language

if TYPE_CHECKING:
    from matchmaking.opportunities.models import Opportunity
    from matchmaking.profiles.models import Organisation, Project

CHUNK_WORDS = 80
"""At most this many words in one item (≈ 110–130 model tokens in Italian or English): short texts embed fast."""

ITEM_KINDS = ("description", "competences", "project", "opportunity")
"""What an item is: a description chunk, the competences and keywords, a project, an opportunity."""


@dataclass(frozen=True)
class Item:
    """One facet of a document, embedded on its own."""

    key: str
    """Stable within its document: ``description#0``, ``competences``, ``project:<id>#0``, ``opportunity:<id>#0``."""
    kind: str
    """One of :data:`ITEM_KINDS`."""
    text: str
    """What is embedded (at most :data:`CHUNK_WORDS` words)."""
    lang: str
    """``"it"`` or ``"en"`` (detected)."""
    label: str = ""
    """How an explanation names it ("project CELLFAB", "description", …)."""


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def chunk_text(text: str, max_words: int = CHUNK_WORDS) -> list[str]:
    """``text`` cut into pieces of at most ``max_words`` words, at sentence ends where possible (nothing dropped)."""
    chunks: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        words = sentence.split()
        if not words:
            continue
        if current and len(current) + len(words) > max_words:
            chunks.append(" ".join(current))
            current = []
        while len(words) > max_words:
            chunks.append(" ".join(words[:max_words]))
            words = words[max_words:]
        current += words
    if current:
        chunks.append(" ".join(current))
    return chunks


def _items(prefix: str, kind: str, text: str, label: str, fallback: str) -> list[Item]:
    pieces = chunk_text(text)
    return [
        Item(key=f"{prefix}#{i}", kind=kind, text=piece, lang=detect_language(piece, fallback), label=label)
        for i, piece in enumerate(pieces)
    ]


def _joined(label: str, values: Sequence[str]) -> str:
    return f"{label}: {', '.join(values)}." if values else ""


def opportunity_item_text(title: str, keywords: Sequence[str], summary: str) -> str:
    """The text of an opportunity as one item before chunking: title, keywords, summary."""
    return " ".join(p for p in (title.strip().rstrip(".") + ".", _joined("Keywords", keywords), summary) if p)


def opportunity_fields(o: Opportunity) -> dict[str, str]:
    """The texts of an opportunity the index searches, by field."""
    return {
        "title": o.title,
        "summary": o.summary,
        "keywords": "; ".join(o.keywords),
        "technology": "; ".join(o.technology_fields),
        "market": "; ".join(o.market_fields),
        "topic": o.topic_code or "",
    }


def opportunity_language(o: Opportunity) -> str:
    """The language an opportunity is written in: of all its fields together (its document's
    :meth:`Document.main_language`; worked out once per text, see ``text._classify``)."""
    return detect_language(" ".join(opportunity_fields(o).values()), DEFAULT_LANGUAGE)


def opportunity_items(o: Opportunity, prefix: str = "opportunity") -> list[Item]:
    """An opportunity's items: its title, keywords and summary, chunked. One chunk (the usual case)
    is in the opportunity's language, as its document is (told from its texts without the item's
    English labels, "Keywords:", "Technology:"); each of several chunks is told apart, that
    language its fallback."""
    text = opportunity_item_text(o.title, o.keywords, o.summary)
    extra = " ".join(p for p in (_joined("Technology", o.technology_fields), _joined("Market", o.market_fields)) if p)
    if extra:
        text = f"{text} {extra}"
    lang, label = opportunity_language(o), f"opportunity “{o.title}”"
    pieces = chunk_text(text)
    if len(pieces) == 1:
        return [Item(key=f"{prefix}#0", kind="opportunity", text=pieces[0], lang=lang, label=label)]
    return _items(prefix, "opportunity", text, label, lang)


def profile_items(
    org: Organisation, projects: Iterable[Project], opportunities: Iterable[Opportunity] = ()
) -> list[Item]:
    """A competence profile's items: description (chunked), competences and keywords, each project, each
    opportunity the organisation published (pass only the active ones)."""
    fallback = detect_language(" ".join([org.description, *org.competences, *org.keywords]))
    out = _items("description", "description", org.description, "description", fallback)
    competences = " ".join(p for p in (_joined("Competences", org.competences), _joined("Keywords", org.keywords)) if p)
    if competences:
        lang = detect_language(competences, fallback)
        out.append(Item(key="competences", kind="competences", text=competences, lang=lang, label="competences"))
    for p in sorted(projects, key=lambda p: p.project_id):
        text = " ".join(
            part
            for part in (
                f"{p.acronym}: {p.title}." if p.acronym else f"{p.title}.",
                p.objective,
                _joined("Topics", p.topics),
                _joined("Keywords", p.keywords),
            )
            if part and part != "."
        )
        out += _items(f"project:{p.project_id}", "project", text, f"project {p.acronym or p.title}", fallback)
    for o in sorted(opportunities, key=lambda o: o.id):
        out += opportunity_items(o, prefix=f"opportunity:{o.id}")
    return out


def centroid(vectors: np.ndarray) -> np.ndarray:
    """The unit mean of item vectors (rows of zeros, not encoded yet, left out): a document's one vector."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    present = vectors[np.any(vectors != 0, axis=1)]
    if present.size == 0:
        return np.zeros(vectors.shape[1], dtype=np.float32)
    mean = present.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


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
    items: tuple[Item, ...] = ()
    """The facets embedded one by one (empty: the document is only its ``vector``)."""
    item_vectors: np.ndarray | None = None
    """``(len(items), DIM)`` unit rows, in the order of ``items``; a row of zeros is not encoded yet."""
    lang: str | None = None
    """The document's main language (detected from its fields when not given)."""
    field_langs: dict[str, str] | None = None
    """The language of each field (detected, when not given, by :meth:`field_tokens`)."""

    _field_terms: dict[str, frozenset[str]] | None = field(default=None, init=False, repr=False, compare=False)

    _field_tokens: dict[str, list[str]] | None = field(default=None, init=False, repr=False, compare=False)
    _field_words: dict[str, dict[str, str]] | None = field(default=None, init=False, repr=False, compare=False)

    def main_language(self) -> str:
        """``lang``, or the language of all the fields together."""
        if self.lang is None:
            self.lang = detect_language(" ".join(self.fields.values()), DEFAULT_LANGUAGE)
        return self.lang

    def field_tokens(self) -> dict[str, list[str]]:
        """The terms of each field, each in its own language (a short field falls back on the document's)."""
        if self._field_tokens is None:
            langs = dict(self.field_langs or {})
            words: dict[str, dict[str, str]] = {}
            tokens: dict[str, list[str]] = {}
            for name, text in self.fields.items():
                lang = langs.get(name)
                if lang is None:
                    lang = langs[name] = detect_language(text, self.main_language())
                pairs = analyse(text, lang)
                tokens[name] = [term for term, _ in pairs]
                words[name] = {}
                for term, word in pairs:
                    words[name].setdefault(term, word)
            self._field_tokens, self._field_words, self.field_langs = tokens, words, langs
        return self._field_tokens

    def field_words(self) -> dict[str, dict[str, str]]:
        """For each field, term → the first word of the field that gave it (what an explanation shows)."""
        self.field_tokens()
        assert self._field_words is not None
        return self._field_words

    def field_terms(self) -> dict[str, frozenset[str]]:
        """The distinct terms of each field (worked out once, for explanations; fields are never edited)."""
        if self._field_terms is None:
            self._field_terms = {name: frozenset(terms) for name, terms in self.field_tokens().items()}
        return self._field_terms

    def tokens(self) -> list[str]:
        """The BM25 terms of the document, boosted fields repeated."""
        out: list[str] = []
        for name, terms in self.field_tokens().items():
            out += terms * FIELD_BOOST.get(name, 1)
        return out

    _encoded: tuple[list[Item], np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def encoded_items(self) -> tuple[list[Item], np.ndarray]:
        """The items that have a vector, and those vectors as one C-contiguous matrix (worked out once)."""
        if self._encoded is None:
            if not self.items or self.item_vectors is None:
                self._encoded = ([], np.zeros((0, len(self.vector)), dtype=np.float32))
            else:
                vectors = np.asarray(self.item_vectors, dtype=np.float32)
                present = np.flatnonzero(np.any(vectors != 0, axis=1))
                self._encoded = ([self.items[i] for i in present.tolist()], np.ascontiguousarray(vectors[present]))
        return self._encoded

    def set_item_vectors(self, vectors: np.ndarray) -> None:
        """Give the items their vectors (in the order of ``items``); ``vector`` becomes their centroid."""
        self.item_vectors = np.asarray(vectors, dtype=np.float32)
        self.vector = centroid(self.item_vectors)
        self._encoded = None


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
