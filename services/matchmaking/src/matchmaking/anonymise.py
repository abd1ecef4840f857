"""Anonymisation of opportunities for partners and the public (EEN practice).

Removed from every text: e-mail addresses, web addresses and domain names,
phone numbers, patent and application numbers, the names of known
organisations (every organisation the service knows of, plus the owner) in
all their forms (:func:`brand_forms`: with and without the legal suffix,
written together or apart, the acronym, the brand word, the website's domain
name), company names recognised by their legal form (S.r.l., S.p.A., GmbH,
Ltd …), and people recognised by a title (Dr., Prof., Ing. …) or by a
"contact:" label. Each is replaced by a neutral placeholder, so the text still
reads.
"""

from __future__ import annotations

import functools
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

_SUFFIX = (
    r"(?:S\.?\s?r\.?\s?l\.?(?:\s?s\.?)?|S\.?\s?p\.?\s?A\.?|S\.?\s?n\.?\s?c\.?|S\.?\s?a\.?\s?s\.?|"
    r"S\.?\s?c\.?\s?a\.?\s?r\.?\s?l\.?|Soc(?:ietà|\.)?\s+Coop(?:erativa|\.)?(?:\s+sociale)?|Onlus|ETS|"
    r"GmbH|AG|Ltd\.?|Limited|Inc\.?|Corp\.?|LLC|B\.?\s?V\.?|N\.?\s?V\.?|SAS|SARL|S\.?\s?A\.?|S\.?\s?L\.?|Oy|AB|plc)"
)
LEGAL_SUFFIX = re.compile(rf"[\s,]+{_SUFFIX}\s*$", re.IGNORECASE)
"""A legal form at the end of a company name (Italian, German, British, French, Dutch … forms)."""

GENERIC_WORDS = frozenset(
    """
    a al alla and azienda biotech biotechnology biotecnologie center centre centro clinic clinica company
    consiglio consorzio consortium d da dei del della delle department di dipartimento e ed fondazione for
    foundation group gruppo health healthcare hospital i il in institute istituto italia italiana italiano
    italy la laboratories laboratorio laboratory lab labs le life lo medical medicina nazionale of ospedale
    per pharma pharmaceutical pharmaceuticals research ricerca sciences scienze sanitaria servizi services
    società solutions srl spa systems the tech technologies tecnologie universita università university
    bio biologics biosciences biomedical biomedicale cancer cell cells devices diagnostica diagnostics
    dispositivi foods food gene genetics genomics imaging innovation innovazione medicale medicals
    nutrition nutraceutica robotics scientific sistemi therapeutics therapy terapie tumori tumours tumors
    vaccines clinical clinico digital digitale engineering ingegneria network rete regionale
    rare rara rari raro advanced applied integrated molecular molecolare precision personalised green smart
    global euro european europea international internazionale nord north sud south general generale open
    human natural toscana toscano tuscany regione region
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
"""Words of an organisation's name that are not a brand on their own ("Università", "Pharma", "di" …)."""

PLACEHOLDER_ORG = "[organisation]"
_SUFFIX_AFTER_PLACEHOLDER = re.compile(rf"{re.escape(PLACEHOLDER_ORG)}[\s,]+{_SUFFIX}(?=\W|$)", re.IGNORECASE)
PLACEHOLDER_PERSON = "[person]"
PLACEHOLDER_CONTACT = "[contact details removed]"
PLACEHOLDER_PATENT = "[patent]"


def _domain_label(website: str) -> str | None:
    """``cellforge`` of ``https://www.cellforge.it/en`` (the registered name, without www or the TLD)."""
    host = re.sub(r"^[a-z]+://", "", website.strip().lower()).split("/")[0].split(":")[0]
    labels = [label for label in host.split(".") if label]
    if labels and labels[0] == "www":
        labels = labels[1:]
    if len(labels) < 2:
        return None
    label = labels[-3] if len(labels) >= 3 and labels[-2] in ("co", "com", "ac", "org") else labels[-2]
    return label if len(label) >= 3 else None


def brand_forms(name: str, website: str | None = None) -> set[str]:
    """The forms an organisation's name takes in free text.

    "CellForge Biotech S.r.l." with website cellforge.it gives: the full name;
    "CellForge Biotech" (no legal suffix); "CellForgeBiotech" and
    "CellForge-Biotech"; "CellForge" and "Cell Forge" (a coined word, or the one
    distinctive word of a name whose other words are generic); the acronym of
    three or more words (a two-letter acronym is too often another word); and
    the website's name, "cellforge" ("cell-forge" also as "cell forge").
    """
    forms: set[str] = set()
    name = " ".join(name.split())
    if not name:
        return forms
    forms.add(name)
    bare = LEGAL_SUFFIX.sub("", name).strip(" ,.-")
    if bare:
        forms.add(bare)
    words = re.findall(r"[^\W_]+(?:['’&][^\W_]+)*", bare)
    if len(words) >= 2:
        forms.add("".join(words))
        forms.add("-".join(words))
    # A word on its own: a coined brand (CamelCase, capitals, digits), or the one distinctive word of a
    # name whose other words are generic ("Nerviano" of "Nerviano Genomics").
    distinctive = [w for w in words if w.lower() not in GENERIC_WORDS and not w.isdigit()]
    for w in distinctive:
        coined = bool(re.search(r"[a-zà-ÿ][A-Z]", w)) or (w.isupper() and len(w) >= 3) or bool(re.search(r"\d", w))
        if coined or (len(distinctive) == 1 and len(words) == 2 and len(w) >= 4 and w[0].isupper()):
            forms.add(w)
        if coined and re.search(r"[a-zà-ÿ][A-Z]", w):
            forms.add(re.sub(r"(?<=[a-zà-ÿ])(?=[A-Z])", " ", w))  # "CellForge" also as "Cell Forge"
    significant = [w for w in words if w.lower() not in ("di", "de", "del", "della", "of", "the", "and", "e", "per")]
    if len(significant) >= 3:
        forms.add("".join(w[0] for w in significant).upper())
    if website:
        label = _domain_label(website)
        if label and label not in GENERIC_WORDS:
            forms.add(label)
            if "-" in label:
                forms.add(label.replace("-", " "))
                forms.add(label.replace("-", ""))
    return {f for f in forms if len(f) >= 3}


_WORD = re.compile(r"[^\W_]+")


@functools.lru_cache(maxsize=1 << 16)
def _name_pattern(name: str) -> tuple[str, re.Pattern[str]] | None:
    """(lower-cased first word, compiled pattern) of one name form (compiled once per process)."""
    parts = [part for part in re.split(r"[\s-]+", name) if part]
    first = _WORD.findall(parts[0]) if parts else []
    if not first:
        return None
    # Spaces and hyphens inside a name match any run of them ("Cell Forge", "Cell-Forge").
    pattern = r"[\s-]+".join(re.escape(part) for part in parts)
    flags: int = re.IGNORECASE
    if name.isupper() and len(name) <= 5:
        flags = 0  # an acronym only in capitals
    elif name.isalpha() and name[0].isupper() and name[1:].islower():
        # An ordinary word used as a brand ("Alpha"): only as written or in capitals, so that
        # "alpha-synuclein" stays.
        pattern, flags = f"(?:{pattern}|{re.escape(name.upper())})", 0
    return first[0].lower(), re.compile(rf"(?<!\w){pattern}(?:['’]s)?(?!\w)", flags)


class NamePatterns:
    """Organisation name forms compiled once and looked up by their first word: anonymising a text
    costs the words of the text, not the size of the register."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(n.strip() for n in names if n and len(n.strip()) >= 3)
        by_first: dict[str, list[tuple[tuple[int, str], re.Pattern[str]]]] = {}
        for name in self.names:
            compiled = _name_pattern(name)
            if compiled is not None:
                by_first.setdefault(compiled[0], []).append(((-len(name), name), compiled[1]))
        self._by_first = by_first

    def __len__(self) -> int:
        return len(self.names)

    def candidates(self, words: set[str]) -> list[re.Pattern[str]]:
        """The patterns of the names whose first word is among ``words``, longest names first (so
        "Alpha Bio Pharma" goes before "Alpha Bio")."""
        found = [entry for word in words for entry in self._by_first.get(word, ())]
        found.sort(key=lambda entry: entry[0])
        return [pattern for _, pattern in found]


@functools.lru_cache(maxsize=8)
def _patterns_of(names: frozenset[str]) -> NamePatterns:
    return NamePatterns(names)


def name_patterns(names: Iterable[str] | NamePatterns) -> NamePatterns:
    """``names`` compiled (already compiled ones as they are)."""
    if isinstance(names, NamePatterns):
        return names
    return _patterns_of(frozenset(n.strip() for n in names if n and len(n.strip()) >= 3))


def anonymise_text(text: str, names: Iterable[str] | NamePatterns = ()) -> str:
    """``text`` without contact details, patent numbers, organisation and person names.

    ``names`` are the organisation names (or any of their forms) to remove: pass
    :func:`brand_forms` of each to catch the forms a name takes in free text (or a
    :class:`NamePatterns` of them, compiled once for many texts).
    """
    if not text:
        return text
    out = EMAIL.sub(PLACEHOLDER_CONTACT, text)
    out = URL.sub(PLACEHOLDER_CONTACT, out)
    out = DOMAIN.sub(PLACEHOLDER_CONTACT, out)
    out = PATENT.sub(PLACEHOLDER_PATENT, out)
    out = PHONE.sub(PLACEHOLDER_CONTACT, out)
    # Only the names whose first word occurs in the text are tried (a register has thousands of forms).
    words = {w.lower() for w in _WORD.findall(out)}
    for pattern in name_patterns(names).candidates(words):
        out = pattern.sub(PLACEHOLDER_ORG, out)
    out = _SUFFIX_AFTER_PLACEHOLDER.sub(PLACEHOLDER_ORG, out)
    out = LEGAL_FORM.sub(PLACEHOLDER_ORG, out)
    out = PERSON.sub(PLACEHOLDER_PERSON + " ", out)
    out = CONTACT.sub(PLACEHOLDER_PERSON + " ", out)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


def anonymise_list(values: Iterable[str], names: Iterable[str] | NamePatterns = ()) -> list[str]:
    """Each value anonymised; values left empty (or only a placeholder) are dropped."""
    patterns = name_patterns(names)
    out = []
    for value in values:
        clean = anonymise_text(value, patterns)
        if clean and clean not in (PLACEHOLDER_ORG, PLACEHOLDER_CONTACT, PLACEHOLDER_PERSON, PLACEHOLDER_PATENT):
            out.append(clean)
    return out
