"""Today's ranking, before the Italian/English and multi-facet work, for the quality benchmark's baseline.

What the service did until then: a hand-written English plural stemmer and one
stop-word list for both languages (copied here unchanged), and one vector per
competence profile from a single text (competences, keywords, description,
project titles and keywords; the English-only all-MiniLM-L6-v2 reads its first
256 tokens), fused with BM25 at weight 0.45 on the raw cosine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from matchmaking.search.document import Document

_TOKEN = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "new",
        "use",
        "using",
        "based",
        "via",
        "within",
        "per",
        "etc",
        "il",
        "lo",
        "la",
        "gli",
        "le",
        "di",
        "da",
        "del",
        "della",
        "dei",
        "delle",
        "e",
        "ed",
        "un",
        "una",
        "per",
        "con",
        "su",
        "tra",
        "fra",
        "che",
        "non",
        "nel",
        "nella",
    ]
)


def stem(word: str) -> str:
    """A light English plural stemmer (therapies → therapy, cells → cell)."""
    if len(word) > 4:
        if word.endswith("ies"):
            return word[:-3] + "y"
        if word.endswith("s") and not word.endswith(("ss", "us", "is")):
            return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop words removed, lightly stemmed terms of ``text``."""
    return [stem(w) for w in _TOKEN.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


def profile_text(description: str, competences: list[str], keywords: list[str], projects: list[Any]) -> str:
    """The text embedded for a competence profile (as the service built it)."""
    parts = []
    if competences:
        parts.append("Competences: " + ", ".join(competences) + ".")
    if keywords:
        parts.append("Keywords: " + ", ".join(keywords) + ".")
    parts.append(description)
    parts += [f"{p.title}." for p in projects]
    parts += [", ".join(p.keywords) for p in projects if p.keywords]
    return " ".join(p for p in parts if p)


def opportunity_text(title: str, keywords: list[str], summary: str) -> str:
    """The text embedded for an opportunity (as the service built it)."""
    parts = [title + ".", "Keywords: " + ", ".join(keywords) + "." if keywords else "", summary]
    return " ".join(p for p in parts if p)


@dataclass
class TodayDocument(Document):
    """A document analysed as before: English plural stemming only, no language detection."""

    def field_tokens(self) -> dict[str, list[str]]:
        if self._field_tokens is None:
            self._field_tokens = {name: tokenize(text) for name, text in self.fields.items()}
            self._field_words = {name: {t: t for t in terms} for name, terms in self._field_tokens.items()}
        return self._field_tokens
