"""Terms of the search index, in Italian and English.

Each text's language is detected (py3langid, restricted to the languages the
cluster writes in); its words are lower-cased, the language's stop words
(bm25s's lists) dropped and the rest stemmed with that language's Snowball
stemmer (PyStemmer). The same word therefore gives the same term in every
text of one language ("terapie", "terapia" → ``terap``; "therapies",
"therapy" → ``therapi``). Terms of the two languages are also joined where a
small life-science glossary knows the translation (``GLOSSARY``): an Italian
text about "malattie rare" carries the English terms of "rare disease" too, so
BM25 finds across languages what the multilingual embedding finds by meaning.
"""

from __future__ import annotations

import functools
import re
import threading

import py3langid.langid as langid
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS, STOPWORDS_ITALIAN

LANGUAGES = ("en", "it")
"""Languages the index analyses; any other text is treated as English."""
DEFAULT_LANGUAGE = "en"
MIN_CONFIDENCE = 0.7
"""Below this probability (a very short or mixed text) the caller's fallback language is used."""

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_EXTRA_STOPWORDS = {
    "en": {"new", "use", "using", "based", "via", "within", "per", "etc", "also"},
    "it": {"nuovo", "nuova", "nuovi", "nuove", "tramite", "ecc", "inoltre", "ambito", "base"},
}
STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(STOPWORDS_EN_PLUS) | _EXTRA_STOPWORDS["en"],
    "it": frozenset(STOPWORDS_ITALIAN) | _EXTRA_STOPWORDS["it"],
}
_SNOWBALL = {"en": "english", "it": "italian"}

GLOSSARY: tuple[tuple[str, str], ...] = (
    ("therapy", "terapia"),
    ("gene", "gene"),
    ("genetic", "genetico"),
    ("disease", "malattia"),
    ("rare", "rara"),
    ("cell", "cellula"),
    ("cancer", "cancro"),
    ("tumour", "tumore"),
    ("tumor", "tumore"),
    ("oncology", "oncologia"),
    ("diagnostic", "diagnostica"),
    ("diagnosis", "diagnosi"),
    ("test", "test"),
    ("blood", "sangue"),
    ("device", "dispositivo"),
    ("medical", "medico"),
    ("clinical", "clinico"),
    ("trial", "sperimentazione"),
    ("patient", "paziente"),
    ("hospital", "ospedale"),
    ("imaging", "imaging"),
    ("screening", "screening"),
    ("breast", "mammella"),
    ("breast", "seno"),
    ("robot", "robot"),
    ("robotic", "robotica"),
    ("rehabilitation", "riabilitazione"),
    ("stroke", "ictus"),
    ("exoskeleton", "esoscheletro"),
    ("sensor", "sensore"),
    ("biosensor", "biosensore"),
    ("vaccine", "vaccino"),
    ("virus", "virus"),
    ("viral", "virale"),
    ("infection", "infezione"),
    ("bacteria", "batteri"),
    ("antibiotic", "antibiotico"),
    ("resistance", "resistenza"),
    ("microbiome", "microbioma"),
    ("gut", "intestino"),
    ("intestinal", "intestinale"),
    ("probiotic", "probiotico"),
    ("extract", "estratto"),
    ("olive", "oliva"),
    ("supplement", "integratore"),
    ("food", "alimento"),
    ("nutraceutical", "nutraceutico"),
    ("cosmetic", "cosmetico"),
    ("skin", "pelle"),
    ("drug", "farmaco"),
    ("pharmaceutical", "farmaceutico"),
    ("manufacturing", "produzione"),
    ("production", "produzione"),
    ("sequencing", "sequenziamento"),
    ("genome", "genoma"),
    ("genomic", "genomico"),
    ("biopsy", "biopsia"),
    ("liquid", "liquida"),
    ("pathology", "patologia"),
    ("histology", "istologia"),
    ("artificial intelligence", "intelligenza artificiale"),
    ("machine learning", "apprendimento automatico"),
    ("software", "software"),
    ("platform", "piattaforma"),
    ("laboratory", "laboratorio"),
    ("research", "ricerca"),
    ("development", "sviluppo"),
    ("partner", "partner"),
    ("validation", "validazione"),
    ("antibody", "anticorpo"),
    ("protein", "proteina"),
    ("immunotherapy", "immunoterapia"),
    ("lymphocyte", "linfocita"),
    ("leukaemia", "leucemia"),
    ("lymphoma", "linfoma"),
    ("registry", "registro"),
    ("cohort", "coorte"),
    ("neuromuscular", "neuromuscolare"),
    ("retina", "retina"),
    ("eye", "occhio"),
    ("ophthalmic", "oftalmico"),
    ("microfluidic", "microfluidica"),
    ("chip", "chip"),
    ("rapid", "rapido"),
    ("pharmacy", "farmacia"),
    ("pharmacogenetic", "farmacogenetica"),
    ("pharmacogenomics", "farmacogenomica"),
    ("personalised", "personalizzata"),
    ("personalized", "personalizzata"),
    ("precision", "precisione"),
    ("medicine", "medicina"),
    ("prescription", "prescrizione"),
    ("dose", "dose"),
    ("wound", "ferita"),
    ("tissue", "tessuto"),
    ("regenerative", "rigenerativa"),
    ("stem", "staminale"),
    ("bioreactor", "bioreattore"),
    ("polyphenol", "polifenolo"),
    ("antioxidant", "antiossidante"),
    ("fermentation", "fermentazione"),
    ("telemedicine", "telemedicina"),
    ("monitoring", "monitoraggio"),
    ("wearable", "indossabile"),
    ("elderly", "anziani"),
    ("mass spectrometry", "spettrometria di massa"),
    ("biomarker", "biomarcatore"),
    ("nanoparticle", "nanoparticella"),
    ("delivery", "veicolazione"),
    ("toxicology", "tossicologia"),
    ("animal", "animale"),
    ("veterinary", "veterinario"),
    ("dental", "dentale"),
    ("implant", "impianto"),
    ("prosthesis", "protesi"),
    ("heart", "cuore"),
    ("cardiac", "cardiaco"),
    ("cardiovascular", "cardiovascolare"),
    ("brain", "cervello"),
    ("neurodegenerative", "neurodegenerativa"),
    ("alzheimer", "alzheimer"),
    ("diabetes", "diabete"),
    ("obesity", "obesità"),
)
"""Pairs (English, Italian) of life-science words whose stems are joined across the two languages."""


@functools.cache
def _identifier() -> langid.LanguageIdentifier:
    ident = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    ident.set_languages(list(LANGUAGES))
    return ident


_local = threading.local()


def _stemmer(lang: str) -> Stemmer.Stemmer:
    # A Stemmer object must not be shared between threads (index builds run in a worker thread).
    stemmers: dict[str, Stemmer.Stemmer] | None = getattr(_local, "stemmers", None)
    if stemmers is None:
        stemmers = _local.stemmers = {}
    if lang not in stemmers:
        stemmers[lang] = Stemmer.Stemmer(_SNOWBALL[lang])
    return stemmers[lang]


def detect_language(text: str, fallback: str = DEFAULT_LANGUAGE) -> str:
    """``"it"`` or ``"en"``: the language ``text`` is written in (``fallback`` when unsure)."""
    lang, confidence = _classify(text)
    return lang if lang is not None and confidence >= MIN_CONFIDENCE else fallback


@functools.lru_cache(maxsize=4096)
def _classify(text: str) -> tuple[str | None, float]:
    """The language of ``text`` and the identifier's confidence (None: too few words to tell), worked
    out once per text: a write asks for the same texts again (an item and its document, the index)."""
    if sum(1 for w in _TOKEN.findall(text) if len(w) >= 3) < 2:
        return None, 0.0
    lang, confidence = _identifier().classify(text)
    return str(lang), float(confidence)


def _words(text: str, lang: str) -> list[str]:
    stop = STOPWORDS[lang]
    return [w for w in _TOKEN.findall(text.lower()) if len(w) > 1 and w not in stop]


def stem_words(words: list[str], lang: str) -> list[str]:
    """The Snowball stems of ``words`` in ``lang``."""
    return list(_stemmer(lang if lang in _SNOWBALL else DEFAULT_LANGUAGE).stemWords(words))


@functools.cache
def _glossary() -> dict[tuple[str, tuple[str, ...]], tuple[str, ...]]:
    """(language, stemmed phrase) → the other language's stemmed phrase."""
    out: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
    for en, it in GLOSSARY:
        en_terms = tuple(stem_words(_words(en, "en"), "en"))
        it_terms = tuple(stem_words(_words(it, "it"), "it"))
        if en_terms and it_terms and en_terms != it_terms:
            out.setdefault(("en", en_terms), it_terms)
            out.setdefault(("it", it_terms), en_terms)
    return out


def translations(terms: list[str], lang: str) -> list[str]:
    """The other language's terms of every glossary phrase (one or two words) found in ``terms``."""
    return [term for term, _ in _translated([(t, t) for t in terms], lang)]


def _translated(pairs: list[tuple[str, str]], lang: str) -> list[tuple[str, str]]:
    glossary = _glossary()
    out: list[tuple[str, str]] = []
    for i, (term, word) in enumerate(pairs):
        other = glossary.get((lang, (term,)))
        if other:
            out += [(t, word) for t in other]
        if i + 1 < len(pairs):
            other = glossary.get((lang, (term, pairs[i + 1][0])))
            if other:
                out += [(t, f"{word} {pairs[i + 1][1]}") for t in other]
    return out


def analyse(text: str, lang: str | None = None, *, cross_lingual: bool = True) -> list[tuple[str, str]]:
    """(term, the word it came from) for every term of ``text`` (see :func:`tokenize`)."""
    if not text:
        return []
    lang = lang if lang in _SNOWBALL else detect_language(text)
    assert lang is not None
    words = _words(text, lang)
    pairs = list(zip(stem_words(words, lang), words, strict=True))
    if cross_lingual:
        pairs += _translated(pairs, lang)
    return pairs


def tokenize(text: str, lang: str | None = None, *, cross_lingual: bool = True) -> list[str]:
    """Stemmed terms of ``text`` without stop words, in its language (detected unless given).

    With ``cross_lingual`` the glossary's translations of the terms follow them.
    """
    return [term for term, _ in analyse(text, lang, cross_lingual=cross_lingual)]
