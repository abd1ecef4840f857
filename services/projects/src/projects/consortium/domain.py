"""Pure rules of the consortium: organisation name / VAT normalisation for linking participants to
members; the foundation's role from its participant role."""

from __future__ import annotations

import re
import unicodedata

from projects.vocabulary import FoundationRole, ParticipantRole

_LEGAL_SUFFIXES = frozenset(
    {
        "srl",
        "srls",
        "spa",
        "sapa",
        "sas",
        "snc",
        "scarl",
        "scrl",
        "sc",
        "scpa",
        "onlus",
        "ets",
        "gmbh",
        "ag",
        "kg",
        "ug",
        "ev",
        "ltd",
        "limited",
        "plc",
        "llp",
        "inc",
        "llc",
        "corp",
        "sa",
        "sl",
        "slu",
        "sarl",
        "bv",
        "nv",
        "ab",
        "oy",
        "as",
        "aps",
        "co",
    }
)


def normalise_name(name: str) -> str:
    """An organisation name reduced for matching.

    Lower-case, accents stripped, abbreviations' dots dropped (``S.r.l.`` →
    ``srl``), other punctuation collapsed to single spaces, and trailing legal
    forms (s.r.l., s.p.a., GmbH, Ltd, …) removed.
    """
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("&", " and ")
    text = re.sub(r"[^a-z0-9]+", " ", text)
    tokens = text.split()
    # Join runs of single letters: "s r l" (from "S.r.l." or "S. r. l.") → "srl".
    joined: list[str] = []
    run = ""
    for tok in tokens:
        if len(tok) == 1 and tok.isalpha():
            run += tok
            continue
        if run:
            joined.append(run)
            run = ""
        joined.append(tok)
    if run:
        joined.append(run)
    while len(joined) > 1 and joined[-1] in _LEGAL_SUFFIXES:
        joined.pop()
    return " ".join(joined)


def normalise_vat(vat: str | None) -> str | None:
    """A VAT number reduced for matching: alphanumerics upper-cased, a country prefix dropped.

    ``IT 01234567890``, ``it01234567890`` and ``01234567890`` all give ``01234567890``.
    """
    if not vat:
        return None
    text = re.sub(r"[^A-Za-z0-9]", "", vat).upper()
    if len(text) > 2 and text[:2].isalpha() and text[2:].isdigit():
        text = text[2:]
    return text or None


def foundation_role_for(participant_role: ParticipantRole) -> FoundationRole:
    """The foundation's role in a project, from its role in the consortium."""
    return {
        ParticipantRole.COORDINATOR: FoundationRole.COORDINATOR,
        ParticipantRole.PARTICIPANT: FoundationRole.PARTNER,
        ParticipantRole.ASSOCIATED_PARTNER: FoundationRole.PARTNER,
        ParticipantRole.THIRD_PARTY: FoundationRole.THIRD_PARTY,
    }[participant_role]
