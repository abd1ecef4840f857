"""The installation's fusion weight follows its users' verdicts on matches, within bounds."""

from __future__ import annotations

import numpy as np

from matchmaking.search.document import Document, Filter
from matchmaking.search.embeddings import DIM
from matchmaking.search.engine import Engine


def unit(*hot: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    for i in hot:
        v[i] = 1.0
    return v / np.linalg.norm(v)


def engine_with_a_lexical_and_a_semantic_candidate() -> tuple[Engine, Document]:
    """'lexical' shares the query's words but not its vector; 'semantic' its vector and one word."""
    e = Engine(bm25_weight=0.5, dense_floor=0.0)
    e.upsert(
        Document(
            key="profile:lexical",
            kind="profile",
            entity_id="lexical",
            fields={"description": "microfluidic cartridge bedside assay"},
            vector=unit(5),
        )
    )
    e.upsert(
        Document(
            key="profile:semantic",
            kind="profile",
            entity_id="semantic",
            fields={"description": "portable bedside reader for quick tests"},
            vector=unit(0, 1, 2),
        )
    )
    e.upsert(
        Document(
            key="profile:other", kind="profile", entity_id="other", fields={"description": "olive oil"}, vector=unit(7)
        )
    )
    e.index.merge()
    query = Document(
        key="opportunity:q",
        kind="opportunity",
        entity_id="q",
        fields={"title": "microfluidic cartridge for bedside assay"},
        vector=unit(0, 1, 2),
    )
    return e, query


def test_votes_move_the_weight_towards_the_signal_that_judged_well_and_stay_bounded() -> None:
    e, query = engine_with_a_lexical_and_a_semantic_candidate()
    flt = Filter(kind="profile")
    before = [h.entity_id for h in e.rank(query, flt).hits]
    assert before[0] == "semantic"
    lexical = next(h for h in e.rank(query, flt).hits if h.entity_id == "lexical")
    lean = e.lean_of({"bm25_normalised": lexical.bm25_normalised, "dense": lexical.dense})
    assert lean > 0  # BM25 liked it more than the embeddings did

    # Users find lexical matches useful (votes on other queries' matches with the same lean).
    for n in range(20):
        e.feedback.add(f"opportunity:o{n}", f"profile:x{n}", +1, lean)
    assert e.effective_weight() == e.bm25_weight + e.weight_span  # bounded: 0.7, not beyond
    after = e.rank(query, flt).hits
    assert after[0].entity_id == "lexical"  # what a user sees: the ranking follows the verdicts
    assert after[0].fused > after[1].fused

    # The same votes withdrawn (changed minds): back to the learned weight and the first ranking.
    for n in range(20):
        e.feedback.add(f"opportunity:o{n}", f"profile:x{n}", -1, lean)
    assert e.effective_weight() == e.bm25_weight
    assert [h.entity_id for h in e.rank(query, flt).hits] == before

    # Matches found not useful although BM25 liked them: the weight moves away from BM25, bounded too.
    for n in range(50):
        e.feedback.add(f"opportunity:o{n}", f"profile:y{n}", -1, 0.5)
    assert e.effective_weight() == e.bm25_weight - e.weight_span


def test_a_single_signal_setting_is_not_nudged_and_bad_score_parts_count_nothing() -> None:
    e, _ = engine_with_a_lexical_and_a_semantic_candidate()
    e.bm25_weight = 1.0
    e.feedback.add("opportunity:a", "profile:b", +1, 0.9)
    assert e.effective_weight() == 1.0
    assert e.lean_of({"bm25_normalised": "not a number", "dense": None}) == 0.0
    assert e.lean_of({}) == 0.0
