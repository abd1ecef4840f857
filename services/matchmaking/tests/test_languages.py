"""Italian and English: analysis per language, one embedding space, multi-facet profiles (real model)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from distretto_dev.testing import service_client
from matchmaking.app import create_app
from matchmaking.config import Settings
from matchmaking.search.document import (
    CHUNK_WORDS,
    Document,
    Filter,
    centroid,
    chunk_text,
    opportunity_items,
    profile_items,
)
from matchmaking.search.embeddings import Encoder, shared_encoder
from matchmaking.search.engine import Engine, aggregate
from matchmaking.search.text import detect_language, tokenize


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return shared_encoder(2)


def test_an_opportunitys_items_are_in_its_language() -> None:
    """One chunk is in the opportunity's language, as its document's terms are; a long English summary
    under an Italian title gives chunks of their own languages."""
    from datetime import date

    from matchmaking.opportunities.models import Opportunity
    from matchmaking.search.indexing import opportunity_document

    def offer(title: str, summary: str) -> Any:
        values = {"id": "o1", "title": title, "summary": summary, "keywords": ["biomarcatori"]}
        values |= {"technology_fields": [], "market_fields": ["oncologia"], "sectors": [], "topic_code": None}
        values |= {"opportunity_type": "technology_offer", "owner_organisation_id": "x", "status": "active"}
        return Opportunity(**values, expires_on=date(2030, 1, 1))

    short = offer("Kit diagnostico per la diagnosi precoce dei tumori", "Cerchiamo partner industriali.")
    (item,) = opportunity_items(short)
    assert item.lang == "it" == opportunity_document(short).main_language()
    english = "We license a validated assay for early detection of pancreatic cancer in blood samples. " * 12
    mixed = offer("Kit diagnostico per la diagnosi precoce dei tumori", english)
    items = opportunity_items(mixed)
    assert len(items) > 1 and items[-1].lang == "en" and opportunity_document(mixed).main_language() == "en"


def test_language_detection_stemming_and_stop_words() -> None:
    assert detect_language("Terapia genica per le malattie rare dell'occhio") == "it"
    assert detect_language("Gene therapy for rare inherited eye diseases") == "en"
    assert detect_language("CAR-T", fallback="it") == "it"  # too short to tell: the caller's language
    # Italian plurals and inflections meet on one term; Italian stop words are dropped.
    assert tokenize("terapie", "it")[0] == tokenize("terapia", "it")[0]
    assert tokenize("cellule", "it")[0] == tokenize("cellula", "it")[0]
    assert "della" not in tokenize("la biopsia della prostata", "it", cross_lingual=False)
    assert tokenize("therapies", "en")[0] == tokenize("therapy", "en")[0]
    # The glossary joins the two languages: an Italian text carries the English terms of its subject.
    assert tokenize("therapy", "en")[0] in tokenize("terapie geniche", "it")
    assert set(tokenize("rare disease", "en")) <= set(tokenize("malattia rara", "it"))


def test_long_texts_are_chunked_not_truncated() -> None:
    text = " ".join(f"Sentence {i} says one thing about cell therapy manufacturing." for i in range(40))
    chunks = chunk_text(text)
    assert len(chunks) > 1
    assert all(len(c.split()) <= CHUNK_WORDS for c in chunks)
    assert " ".join(chunks).split() == text.split()  # every word kept, in order
    one_long_sentence = " ".join(["word"] * (CHUNK_WORDS * 2 + 5))
    assert [len(c.split()) for c in chunk_text(one_long_sentence)] == [CHUNK_WORDS, CHUNK_WORDS, 5]


def opportunity(encoder: Encoder, key: str, text: str, otype: str) -> Document:
    return Document(
        key=f"opportunity:{key}",
        kind="opportunity",
        entity_id=key,
        fields={"title": text},
        vector=encoder.encode_one(text),
        opportunity_type=otype,
        owner_id=key,
    )


ENGLISH_REQUESTS = {
    "gene-eye": "Partner wanted to develop a gene therapy for an inherited retinal disease.",
    "pcr-resp": "We need real-time PCR kits to detect respiratory viruses in hospital laboratories.",
    "exo-stroke": "Looking for a robotic exoskeleton to help stroke patients walk again.",
    "olive": "Supplier of standardised olive leaf polyphenol extracts for food supplements wanted.",
}
ITALIAN_REQUESTS = {
    "gene-eye": "Cerchiamo un partner per sviluppare una terapia genica per una malattia ereditaria della retina.",
    "pcr-resp": "Cerchiamo kit di PCR in tempo reale per rilevare i virus respiratori nei laboratori ospedalieri.",
    "exo-stroke": "Cerchiamo un esoscheletro robotico che aiuti i pazienti colpiti da ictus a camminare di nuovo.",
    "olive": "Cerchiamo un fornitore di estratti standardizzati di polifenoli da foglie di olivo per integratori.",
}
ITALIAN_OFFERS = {
    "gene-eye": "Offriamo vettori virali adeno-associati per la terapia genica delle distrofie retiniche ereditarie.",
    "exo-stroke": "Offriamo un esoscheletro indossabile per la riabilitazione del cammino dopo un ictus.",
}
ENGLISH_OFFERS = {
    "pcr-resp": "We offer CE-marked multiplex real-time PCR assays for influenza and other respiratory viruses.",
    "olive": "We offer olive leaf extracts rich in hydroxytyrosol, standardised for nutraceutical use.",
}


@pytest.mark.parametrize(
    ("requests", "offers"),
    [(ENGLISH_REQUESTS, ITALIAN_OFFERS), (ITALIAN_REQUESTS, ENGLISH_OFFERS)],
    ids=["italian-offer-finds-english-request", "english-offer-finds-italian-request"],
)
def test_an_offer_finds_the_request_on_its_subject_in_the_other_language(
    encoder: Encoder, requests: dict[str, str], offers: dict[str, str]
) -> None:
    engine = Engine()
    for key, text in requests.items():
        engine.upsert(opportunity(encoder, f"req-{key}", text, "technology_request"))
    engine.index.merge()
    for subject, text in offers.items():
        query = opportunity(encoder, f"offer-{subject}", text, "technology_offer")
        flt = Filter(kind="opportunity", opportunity_types=frozenset({"technology_request"}))
        hybrid = engine.rank(query, flt, limit=4).hits
        assert hybrid[0].entity_id == f"req-{subject}", [(h.entity_id, h.score) for h in hybrid]
        dense = engine.rank(query, flt, limit=4, bm25_weight=0.0).hits
        assert dense[0].entity_id == f"req-{subject}"
        assert dense[0].dense > dense[1].dense + 0.02  # a clear lead, not a tie broken by key


def test_a_profile_is_found_through_one_of_its_projects_and_the_explanation_names_it(encoder: Encoder) -> None:
    def org(org_id: str, description: str, competences: list[str], projects: list[tuple[str, str, str]]) -> Document:
        o = SimpleNamespace(organisation_id=org_id, description=description, competences=competences, keywords=[])
        ps = [
            SimpleNamespace(project_id=p, acronym=a, title=t, objective="", topics=[], keywords=[])
            for p, a, t in projects
        ]
        items = profile_items(o, ps)
        vectors = encoder.encode([i.text for i in items])
        fields = {"description": description, "competences": "; ".join(competences), "projects": ""}
        return Document(
            key=f"profile:{org_id}",
            kind="profile",
            entity_id=org_id,
            fields=fields,
            vector=centroid(vectors),
            items=tuple(items),
            item_vectors=vectors,
        )

    engine = Engine()
    engine.upsert(
        org(
            "cro",
            "Organizzazione di ricerca a contratto: monitoraggio di studi clinici multicentrici, gestione dei dati e "
            "farmacovigilanza per aziende farmaceutiche.",
            ["monitoraggio clinico", "farmacovigilanza"],
            [("p1", "RARENET", "Registro elettronico condiviso per la storia naturale delle malattie rare")],
        )
    )
    engine.upsert(
        org(
            "software",
            "Software house building web and mobile applications and cloud dashboards for public administrations.",
            ["software development", "cloud"],
            [("p2", "CITYAPP", "Mobile app for municipal services")],
        )
    )
    engine.upsert(
        org(
            "food",
            "Food company producing olive oil and preserved vegetables for export.",
            ["food processing"],
            [],
        )
    )
    engine.index.merge()
    text = "Natural history data from a shared patient registry for a rare neuromuscular disease."
    query = Document(
        key="opportunity:q", kind="opportunity", entity_id="q", fields={"title": text}, vector=encoder.encode_one(text)
    )
    hits = engine.rank(query, Filter(kind="profile"), limit=3).hits
    assert hits[0].entity_id == "cro"
    matched = hits[0].explanation["matched_item"]
    assert matched["kind"] == "project" and matched["label"] == "project RARENET"
    assert "project RARENET" in hits[0].explanation["summary"]


def test_aggregation_of_item_scores() -> None:
    sims = np.array([0.2, 0.9, 0.5, 0.7, 0.7, 0.1], dtype=np.float32)
    counts = np.array([3, 1, 2])
    assert aggregate(sims, counts, "max").tolist() == pytest.approx([0.9, 0.7, 0.7])
    assert aggregate(sims, counts, "top2").tolist() == pytest.approx([0.7, 0.7, 0.4])
    assert aggregate(sims, counts, "soft3").tolist() == pytest.approx(
        [(0.9 + 0.5 * 0.5 + 0.25 * 0.2) / 1.75, 0.7, (0.7 + 0.5 * 0.1) / 1.5]
    )


async def test_through_the_service_an_italian_offer_finds_the_english_request_and_the_reverse(
    settings: Settings, publish: Any
) -> None:
    def body(otype: str, title: str, summary: str) -> dict[str, Any]:
        return {
            "opportunity_type": otype,
            "title": title,
            "summary": summary,
            "keywords": [],
            "technology_fields": [],
            "market_fields": [],
            "sectors": ["biotech"],
            "owner_organisation_id": str(uuid.uuid4()),
        }

    async with service_client(create_app(settings)) as client:
        it_offer = await publish(client, **body("technology_offer", *ITALIAN_OFFER))
        en_offer = await publish(client, **body("technology_offer", *ENGLISH_OFFER))
        en_request = await publish(client, **body("technology_request", *ENGLISH_REQUEST))
        it_request = await publish(client, **body("technology_request", *ITALIAN_REQUEST))
        for other in OTHER_REQUESTS:
            await publish(client, **body("technology_request", *other))

        async def counterparts(opportunity_id: str) -> list[dict[str, Any]]:
            page = await client.get(f"/opportunities/{opportunity_id}/counterparts", params={"target": "opportunities"})
            assert page.status_code == 200, page.text
            return page.json()["items"]  # type: ignore[no-any-return]

        from_italian = await counterparts(it_offer["id"])
        assert from_italian[0]["counterpart_id"] == en_request["id"], [i["title"] for i in from_italian]
        assert from_italian[0]["explanation"]["matched_item"]["kind"] == "opportunity"
        from_english = await counterparts(en_offer["id"])
        assert from_english[0]["counterpart_id"] == it_request["id"], [i["title"] for i in from_english]


ITALIAN_OFFER = (
    "Esoscheletro indossabile per la riabilitazione del cammino",
    "Offriamo un esoscheletro robotico per gli arti inferiori che aiuta i pazienti colpiti da ictus a camminare.",
)
ENGLISH_REQUEST = (
    "Robotic device wanted for gait rehabilitation after stroke",
    "A rehabilitation hospital looks for a wearable robot that helps stroke survivors walk again.",
)
ENGLISH_OFFER = (
    "Olive leaf extracts standardised in hydroxytyrosol",
    "We offer polyphenol-rich olive leaf extracts for food supplements, with stability data.",
)
ITALIAN_REQUEST = (
    "Cerchiamo estratti di foglie di olivo ricchi di polifenoli",
    "Un'azienda di integratori alimentari cerca un fornitore di estratti standardizzati di foglie di olivo.",
)
OTHER_REQUESTS = [
    ("Real-time PCR kits for respiratory viruses wanted", "A hospital laboratory needs CE-IVD multiplex PCR kits."),
    (
        "Cerchiamo un partner per una terapia genica della retina",
        "Una fondazione di pazienti finanzia lo sviluppo di vettori virali per una distrofia retinica ereditaria.",
    ),
]
