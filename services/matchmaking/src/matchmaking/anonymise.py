"""Anonymisation of opportunities for partners and the public (EEN practice).

Removed from every text: e-mail addresses, web addresses and domain names,
phone numbers, patent and application numbers, the names of known
organisations (every organisation the service knows of, plus the owner),
company names recognised by their legal form (S.r.l., S.p.A., GmbH, Ltd …),
and people recognised by a title (Dr., Prof., Ing. …) or by a "contact:"
label. Each is replaced by a neutral placeholder, so the text still reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
DOMAIN = re.compile(r"\b[\w-]+(?:\.[\w-]+)*\.(?:com|it|eu|org|net|io|de|fr|es|uk|bio|health|info|co)\b", re.IGNORECASE)
PHONE = re.compile(r"(?<![\w/])(?:\+|00)?\d[\d ().-]{7,}\d(?![\w/])")
PATENT = re.compile(
    r"\b(?:(?:EP|US|WO|IT|DE|FR|GB|JP|CN|PCT)[\s/-]?(?:\d[\d,./ -]{4,}\d)(?:\s?[AB]\d)?|"
    r"patent(?:\s+(?:no\.?|number|n\.|application))?\s*[:#]?\s*\d[\d,./ -]{4,}\d)",
    re.IGNORECASE,
)
LEGAL_FORM = re.compile(
    r"\b(?:[A-Z][\w&'-]*\s+){0,3}[A-Z][\w&'-]*\s*,?\s+"
    r"(?:S\.?\s?r\.?\s?l\.?|S\.?\s?p\.?\s?A\.?|S\.?\s?n\.?\s?c\.?|S\.?\s?a\.?\s?s\.?|GmbH|AG|Ltd\.?|Limited|Inc\.?|"
    r"LLC|B\.?V\.?|N\.?V\.?|SAS|SARL|S\.A\.|Oy|AB|plc)(?=\W|$)"
)
PERSON = re.compile(
    r"\b(?:Dr|Prof|Professor|Ing|Dott|Dott\.ssa|Mr|Mrs|Ms|Sig|Sig\.ra)\.?\s+(?:[A-Z][a-zà-ú'-]+\s*){1,3}"
)
CONTACT = re.compile(r"\b(?i:contact|contatto|referente|ask for)\s*:?\s+(?:[A-Z][a-zà-ú'-]+\s*){1,3}")

PLACEHOLDER_ORG = "[organisation]"
PLACEHOLDER_PERSON = "[person]"
PLACEHOLDER_CONTACT = "[contact details removed]"
PLACEHOLDER_PATENT = "[patent]"


def anonymise_text(text: str, names: Iterable[str] = ()) -> str:
    """``text`` without contact details, patent numbers, organisation and person names."""
    if not text:
        return text
    out = EMAIL.sub(PLACEHOLDER_CONTACT, text)
    out = URL.sub(PLACEHOLDER_CONTACT, out)
    out = DOMAIN.sub(PLACEHOLDER_CONTACT, out)
    out = PATENT.sub(PLACEHOLDER_PATENT, out)
    out = PHONE.sub(PLACEHOLDER_CONTACT, out)
    # Longest names first, so "Alpha Bio Pharma" goes before "Alpha Bio".
    for name in sorted({n.strip() for n in names if n and len(n.strip()) >= 3}, key=len, reverse=True):
        out = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", PLACEHOLDER_ORG, out, flags=re.IGNORECASE)
    out = LEGAL_FORM.sub(PLACEHOLDER_ORG, out)
    out = PERSON.sub(PLACEHOLDER_PERSON + " ", out)
    out = CONTACT.sub(PLACEHOLDER_PERSON + " ", out)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


def anonymise_list(values: Iterable[str], names: Iterable[str] = ()) -> list[str]:
    """Each value anonymised; values left empty (or only a placeholder) are dropped."""
    names = list(names)
    out = []
    for value in values:
        clean = anonymise_text(value, names)
        if clean and clean not in (PLACEHOLDER_ORG, PLACEHOLDER_CONTACT, PLACEHOLDER_PERSON, PLACEHOLDER_PATENT):
            out.append(clean)
    return out
