"""The ranking engine on the real embedding model: fusion, filters, explanations, delta index, feedback."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from matchmaking.search.document import Document, Filter
from matchmaking.search.domain import FeedbackWeights
from matchmaking.search.embeddings import DIM, Encoder, shared_encoder
from matchmaking.search.engine import Engine
from matchmaking.search.index import Index

PROFILES = {
    "celltx": (
        "company",
        ["biotech"],
        "IT",
        "Engineering of CAR-T and TCR T cells; closed automated GMP manufacturing.",
    ),
    "unifi-immuno": (
        "university",
        ["biotech"],
        "IT",
        "Academic laboratory of tumour immunology: T lymphocyte engineering, adoptive cell therapy for leukaemia.",
    ),
    "dx-lab": ("company", ["diagnostics"], "IT", "Molecular diagnostics kits: PCR assays for infectious disease."),
    "olive": ("company", ["nutraceutics"], "IT", "Nutraceutical extracts from olive leaves, polyphenols, supplements."),
    "cnr-imaging": (
        "research_institute",
        ["medical_devices"],
        "IT",
        "Microwave imaging and breast cancer screening devices; radar signal processing.",
    ),
    "munich-cells": ("company", ["biotech"], "DE", "Contract manufacturing of cell and gene therapies, viral vectors."),
}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return shared_encoder(2)


def profile(encoder: Encoder, key: str) -> Document:
    kind, sectors, country, text = PROFILES[key]
    return Document(
        key=f"profile:{key}",
        kind="profile",
        entity_id=key,
        fields={"description": text, "competences": "", "keywords": "", "projects": ""},
        vector=encoder.encode_one(text),
        org_kind=kind,
        sectors=tuple(sectors),
        country=country,
        owner_id=key,
    )


def query(encoder: Encoder, text: str, keywords: str = "", **kw: object) -> Document:
    return Document(
        key="opportunity:q",
        kind="opportunity",
        entity_id="q",
        fields={"title": text, "summary": "", "keywords": keywords},
        vector=encoder.encode_one(text + " " + keywords),
        opportunity_type="technology_request",
        owner_id="requester",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def engine(encoder: Encoder) -> Engine:
    e = Engine(bm25_weight=0.45, feedback=FeedbackWeights())
    for key in PROFILES:
        e.upsert(profile(encoder, key))
    e.index.merge()
    return e


def ids(ranking: object) -> list[str]:
    return [h.entity_id for h in ranking.hits]  # type: ignore[attr-defined]


def test_relevant_profiles_rank_first_with_score_parts(engine: Engine, encoder: Encoder) -> None:
    q = query(encoder, "Looking for CAR-T cell manufacturing partners", "CAR-T; cell therapy")
    ranking = engine.rank(q, Filter(kind="profile"), limit=6)
    top = ids(ranking)
    assert set(top[:3]) == {"celltx", "unifi-immuno", "munich-cells"}
    assert top[0] == "celltx"
    assert top.index("olive") > 2
    first = ranking.hits[0]
    assert first.bm25 > 0 and first.dense > 0.3
    floor = engine.dense_floor
    assert first.fused == pytest.approx(
        0.45 * first.bm25_normalised + 0.55 * max(0.0, (first.dense - floor) / (1 - floor)), abs=1e-5
    )
    assert first.score == pytest.approx(first.fused)
    assert ranking.total == len(PROFILES)


def test_fusion_combines_both_signals(engine: Engine, encoder: Encoder) -> None:
    # Lexically only "cell" is shared with the university; semantically it is the closest academic lab.
    q = query(encoder, "adoptive immunotherapy with engineered lymphocytes against blood cancers")
    bm25_only = engine.rank(q, Filter(kind="profile"), limit=6, bm25_weight=1.0)
    dense_only = engine.rank(q, Filter(kind="profile"), limit=6, bm25_weight=0.0)
    hybrid = engine.rank(q, Filter(kind="profile"), limit=6)
    assert [h.bm25 for h in bm25_only.hits] == sorted((h.bm25 for h in bm25_only.hits), reverse=True)
    assert [h.dense for h in dense_only.hits] == sorted((h.dense for h in dense_only.hits), reverse=True)
    assert dense_only.hits[0].entity_id == "unifi-immuno"
    assert all(h.bm25 == 0 for h in dense_only.hits)
    floor = engine.dense_floor
    for h in hybrid.hits:
        assert h.score == pytest.approx(
            0.45 * h.bm25_normalised + 0.55 * max(0.0, (h.dense - floor) / (1 - floor)), abs=1e-5
        )


def test_filters_by_kind_sector_country_owner_and_expiry(engine: Engine, encoder: Encoder) -> None:
    q = query(encoder, "CAR-T cell manufacturing", "cell therapy")
    research = ids(engine.rank(q, Filter(kind="profile", org_kinds=frozenset({"university", "research_institute"}))))
    assert set(research) == {"unifi-immuno", "cnr-imaging"}
    assert ids(engine.rank(q, Filter(kind="profile", country="DE"))) == ["munich-cells"]
    biotech = ids(engine.rank(q, Filter(kind="profile", sectors=frozenset({"biotech"}))))
    assert set(biotech) == {"celltx", "unifi-immuno", "munich-cells"}
    assert "celltx" not in ids(engine.rank(q, Filter(kind="profile", exclude_owner="celltx")))
    assert ids(engine.rank(q, Filter(kind="opportunity"))) == []

    e = Engine()
    e.upsert(profile(encoder, "celltx"))
    e.index.set_active("profile:celltx", True, date(2020, 1, 1))
    assert ids(e.rank(q, Filter(kind="profile", valid_on=date(2025, 1, 1)))) == []
    assert ids(e.rank(q, Filter(kind="profile"))) == ["celltx"]


def test_explanation_names_fields_and_terms(engine: Engine, encoder: Encoder) -> None:
    q = query(encoder, "microwave imaging for breast cancer screening")
    hit = engine.rank(q, Filter(kind="profile"), limit=1).hits[0]
    assert hit.entity_id == "cnr-imaging"
    matched = hit.explanation["matched_fields"]["description"]
    assert {"microwave", "imaging", "breast", "screening"} <= set(matched)
    assert "microwave" in hit.explanation["summary"]


def test_short_and_long_documents_come_back_with_their_fields() -> None:
    """A short document's fields are kept as they are, a long one's compressed: both read back whole
    (what an explanation shows), and an unchanged document is recognised as such either way."""
    index = Index()
    long_text = "Piattaforma di bioprocesso chiusa e automatizzata per terapie cellulari. " * 20
    docs = {
        "opportunity:short": {"title": "Kit diagnostico", "summary": ""},
        "opportunity:long": {"title": "Bioprocesso", "summary": long_text},
    }
    for key, fields in docs.items():
        index.upsert(
            Document(key=key, kind="opportunity", entity_id=key, fields=fields, vector=np.zeros(DIM, np.float32))
        )
    stored = {key: index.records[index.row_of[key]] for key in docs}
    assert stored["opportunity:short"] is not None and stored["opportunity:short"].fields.startswith(b"{")
    assert stored["opportunity:long"] is not None and len(stored["opportunity:long"].fields) < len(long_text) // 4
    for key, fields in docs.items():
        row = index.row_of[key]
        assert index.document(row).fields == fields
        same = Document(key=key, kind="opportunity", entity_id=key, fields=dict(fields), vector=np.zeros(DIM))
        assert index.unchanged(same)
        assert not index.unchanged(replace(same, fields={**fields, "title": "Altro"}))


def test_a_full_delta_is_merged_by_whoever_asks_and_its_size_grows_with_the_index() -> None:
    """With ``on_merge_due`` (the service's merge task) a write that fills the delta asks for the merge
    instead of running it; the delta may hold an eighth of the index before it is full."""

    def doc(i: int) -> Document:
        fields = {"title": f"{TERMS[i % len(TERMS)]} {i}", "summary": ""}
        return Document(key=f"opportunity:{i}", kind="opportunity", entity_id=str(i), fields=fields, vector=None)  # type: ignore[arg-type]

    e = Engine()
    e.merge_threshold = 4
    for i in range(3):
        e.upsert(doc(i))
    e.upsert(doc(3))  # no one to ask: merged by the write itself
    assert not e.index.delta
    asked: list[int] = []
    e.on_merge_due = lambda: asked.append(len(e.index.delta))
    for i in range(4, 8):
        e.upsert(doc(i))
    assert asked == [4] and len(e.index.delta) == 4  # asked, not merged
    e.merge_threshold = 10**9
    for i in range(8, 80):
        e.upsert(doc(i))
    e.index.merge()
    e.merge_threshold, asked[:] = 4, []
    for i in range(80, 100):
        e.upsert(doc(i))
    # 80 rows, then more: asked once the delta holds an eighth of them (11 of 91), not at 4
    assert asked[0] == 11 and e.index.size == 100


def test_delta_rows_are_searchable_before_and_after_the_merge(encoder: Encoder) -> None:
    e = Engine()
    e.eager_merge_rows = 0  # behave as a large index: no merge at query time
    for key in ("celltx", "dx-lab", "olive"):
        e.upsert(profile(encoder, key))
    e.index.merge()
    e.upsert(profile(encoder, "cnr-imaging"))
    assert len(e.index.delta) == 1
    q = query(encoder, "microwave breast imaging")
    before = e.rank(q, Filter(kind="profile"), limit=2).hits
    assert before[0].entity_id == "cnr-imaging" and before[0].bm25 > 0
    e.index.merge()
    assert not e.index.delta
    after = e.rank(q, Filter(kind="profile"), limit=2).hits
    assert after[0].entity_id == "cnr-imaging"
    # Replacing a document's text moves it: the old terms no longer match.
    e.upsert(
        profile(encoder, "olive").__class__(**{**profile(encoder, "olive").__dict__, "key": "profile:cnr-imaging"})
    )
    assert e.rank(q, Filter(kind="profile"), limit=1).hits[0].bm25 == 0
    e.remove("profile:cnr-imaging")
    assert "cnr-imaging" not in ids(e.rank(q, Filter(kind="profile")))


TERMS = [
    "antibody",
    "assay",
    "biopsy",
    "cohort",
    "device",
    "exoskeleton",
    "genome",
    "imaging",
    "lymphoma",
    "microbiome",
    "organoid",
    "peptide",
]


def clustered_document(rng: np.random.Generator, subspace: np.ndarray, centres: np.ndarray, i: int) -> Document:
    """A synthetic profile: a vector near one of a few centres in a 40-dimension subspace, three terms."""
    v = subspace @ (centres[i % len(centres)] + 0.4 * rng.normal(size=subspace.shape[1]))
    v = (v + 0.01 * rng.normal(size=DIM)).astype(np.float32)
    words = " ".join(TERMS[j] for j in rng.choice(len(TERMS), 3, replace=False))
    return Document(
        key=f"profile:{i:05d}",
        kind="profile",
        entity_id=f"{i:05d}",
        fields={"description": words},
        vector=v / np.linalg.norm(v),
        country="DE" if i % 4 == 0 else "IT",
        owner_id=f"{i:05d}",
    )


def two_stage_engine(rows: int) -> tuple[Engine, np.random.Generator, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    subspace = np.linalg.qr(rng.normal(size=(DIM, 40)))[0]
    centres = rng.normal(size=(25, 40))
    e = Engine()
    e.merge_threshold = rows + 1
    e.index.two_stage_rows = 1000  # the production threshold is 20,000 rows: the same code on a smaller index
    e.exact_rows = 50
    e.shortlist = 100
    for i in range(rows):
        e.upsert(clustered_document(rng, subspace, centres, i))
    e.index.merge()
    return e, rng, subspace, centres


def exact(e: Engine, q: Document, flt: Filter, **kw: object) -> list[tuple[str, float]]:
    saved = e.index.two_stage_rows
    e.index.two_stage_rows = 10**9  # every eligible row's exact cosine
    try:
        return [(h.key, h.score) for h in e.rank(q, flt, **kw).hits]  # type: ignore[arg-type]
    finally:
        e.index.two_stage_rows = saved


def test_two_stage_dense_search_returns_the_exact_ranking() -> None:
    e, rng, subspace, centres = two_stage_engine(3000)
    assert e.index.projection is not None and e.index.projection.fitted_rows == 3000
    e.feedback_weights = FeedbackWeights(pair=1.0)
    for n in range(12):
        q = clustered_document(rng, subspace, centres, 100_000 + n)
        q = Document(key="opportunity:q", kind="opportunity", entity_id="q", fields=q.fields, vector=q.vector)
        # A row far down the ranking, voted useful for this query: rescored although not shortlisted.
        e.feedback.clear()
        voted = exact(e, q, Filter(kind="profile"), limit=500)[-1][0]
        e.feedback.add("opportunity:q", voted, 1)
        assert voted in [h.key for h in e.rank(q, Filter(kind="profile"), limit=20).hits]
        approx = e.index.dense_approx(q.vector)
        assert approx is not None  # the first stage runs
        assert np.abs(approx - e.index.dense(q.vector)).max() < 0.05
        for weight, flt in [
            (None, Filter(kind="profile")),
            (0.0, Filter(kind="profile")),
            (None, Filter(kind="profile", country="DE", exclude_owner="00004")),
        ]:
            got = [(h.key, h.score) for h in e.rank(q, flt, limit=20, bm25_weight=weight).hits]
            assert got == exact(e, q, flt, limit=20, bm25_weight=weight)
        page = e.rank(q, Filter(kind="profile"), limit=10, offset=10).hits
        assert [(h.key, h.score) for h in page] == exact(e, q, Filter(kind="profile"), limit=10, offset=10)
    focus = e.rank(q, Filter(kind="profile"), focus_key=voted).hits
    assert focus[0].feedback > 1.0 and focus[0].score == pytest.approx(focus[0].fused + focus[0].feedback, abs=1e-5)


def test_the_projection_is_refitted_and_rows_written_meanwhile_are_projected() -> None:
    e, rng, subspace, centres = two_stage_engine(1500)
    e.merge_threshold = 10**9
    first = e.index.projection
    assert first is not None and first.fitted_rows == 1500
    for i in range(1500):
        e.upsert(clustered_document(rng, subspace, centres, 1500 + i))
    # The index doubled since the fit: the next build refits. Rows written between its snapshot and
    # its install (the service builds in a worker thread) are projected with the new basis.
    snapshot = e.index.snapshot()
    assert snapshot.vectors is not None
    e.upsert(clustered_document(rng, subspace, centres, 5))  # changed
    for i in range(1200):  # added, growing the arrays
        e.upsert(clustered_document(rng, subspace, centres, 3000 + i))
    e.index.install(Index.build(snapshot))
    fitted = e.index.projection
    assert fitted is not None and fitted.fitted_rows == 3000 and not np.array_equal(fitted.basis, first.basis)
    n = e.index.items
    assert np.allclose(e.index.item_reduced[:n], e.index.item_vectors[:n] @ fitted.basis, atol=1e-5)
    # A new document identical to the query: dense-only, it can only be found through its reduced row.
    target = clustered_document(rng, subspace, centres, 9999)
    e.upsert(target)
    q = Document(key="opportunity:q", kind="opportunity", entity_id="q", fields={}, vector=target.vector)
    hits = e.rank(q, Filter(kind="profile"), limit=5, bm25_weight=0.0).hits
    assert hits[0].key == target.key and hits[0].dense == pytest.approx(1.0, abs=1e-5)


def test_feedback_moves_a_candidate(engine: Engine, encoder: Encoder) -> None:
    q = query(encoder, "Looking for CAR-T cell manufacturing partners", "CAR-T; cell therapy")
    before = ids(engine.rank(q, Filter(kind="profile")))
    second = before[1]
    try:
        engine.feedback.add("opportunity:q", f"profile:{before[0]}", -1)
        engine.feedback.add("opportunity:q", f"profile:{second}", +1)
        after = engine.rank(q, Filter(kind="profile"))
        assert ids(after)[0] == second
        assert after.hits[0].feedback > 0
        assert "feedback" in after.hits[0].explanation["summary"]
    finally:
        engine.feedback.clear()


def test_embeddings_are_unit_vectors_and_deterministic(encoder: Encoder) -> None:
    a = encoder.encode(["rare diseases registry", "CAR-T", ""])
    assert a.shape == (3, 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    assert np.array_equal(a, encoder.encode(["rare diseases registry", "CAR-T", ""]))


def test_pytorch_is_never_imported(encoder: Encoder) -> None:
    import sys

    encoder.encode_one("cell therapy")
    assert "torch" not in sys.modules
    assert "sentence_transformers" not in sys.modules


def test_documents_whose_items_grow_shrink_move_and_are_compacted_rank_as_in_a_fresh_index() -> None:
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(6, DIM))

    def unit(n: int) -> np.ndarray:
        """Vectors near a few centres: cosines well apart from each other, few ties."""
        v = (centres[rng.integers(0, len(centres), n)] + 0.8 * rng.normal(size=(n, DIM))).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def doc(i: int) -> Document:
        words = " ".join(TERMS[j] for j in rng.choice(len(TERMS), 3, replace=False))
        return Document(
            key=f"profile:{i:04d}", kind="profile", entity_id=f"{i:04d}", fields={"description": words}, vector=None
        )  # type: ignore[arg-type]

    e = Engine(dense_floor=0.0)
    e.index.two_stage_rows = 150  # a projection is fitted and kept up to date through the moves
    live: dict[str, tuple[Document, list[tuple[tuple[str, str, str], np.ndarray]]]] = {}
    queries = unit(5)
    for round_ in range(5):
        for i in rng.choice(400, 250, replace=False).tolist():
            key = f"profile:{i:04d}"
            if key in live and rng.random() < 0.15:
                e.remove(key)
                del live[key]
                continue
            d = doc(i)
            n = int(rng.integers(0, 7))  # 0: none encoded yet
            items = [((f"part#{j}", "description", f"part {j} of {i}"), v) for j, v in enumerate(unit(n))]
            e.upsert(d, items)
            live[key] = (d, items)
        e.index.merge()
        assert e.index.dead_items > 0 or round_ == 0
        if round_ % 2:
            e.index.compact()
            assert e.index.dead_items == 0 and e.index.items == e.index.live_items
        basis = e.index.projection.basis if e.index.projection else None
        if basis is not None:
            n_items = e.index.items
            assert np.allclose(e.index.item_reduced[:n_items], e.index.item_vectors[:n_items] @ basis, atol=1e-5)

        fresh = Engine(dense_floor=0.0)
        for d, items in live.values():
            fresh.upsert(d, items)
        fresh.index.merge()
        for q in queries:
            query = Document(key="opportunity:q", kind="opportunity", entity_id="q", fields={}, vector=q)
            for method in ("max", "soft3"):
                got = exact(e, query, Filter(kind="profile"), limit=30, bm25_weight=0.0, aggregation=method)
                want = exact(fresh, query, Filter(kind="profile"), limit=30, bm25_weight=0.0, aggregation=method)
                assert got[0][1] > got[-1][1] > 0  # a ranking by cosine, not by key among ties
                assert [k for k, _ in got] == [k for k, _ in want]
                assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)
            best = e.rank(query, Filter(kind="profile"), limit=1, bm25_weight=0.0).hits[0]
            key, (_, items) = best.key, live[best.key]
            cosines = [float(v @ q) for _, v in items]
            assert best.item is not None and best.item[2] == items[int(np.argmax(cosines))][0][2]
        for key, (_, items) in list(live.items())[:20]:
            stored = e.index.get(key)
            assert stored is not None
            want_vector = np.mean([v for _, v in items], axis=0) if items else np.zeros(DIM)
            norm = np.linalg.norm(want_vector)
            assert np.allclose(stored.vector, want_vector / norm if norm else want_vector, atol=1e-5)


def test_a_large_index_in_int8_ranks_as_in_float32() -> None:
    # The production threshold is 50,000 documents: the same code on a smaller index.
    small, large = two_stage_engine(1500)[0], two_stage_engine(1500)[0]
    small.index.compact_rows = 10**9
    large.index.compact_rows = 1000
    for e in (small, large):
        e.index.merge()
    assert large.index.quantised and not small.index.quantised
    assert large.index.item_vectors.nbytes * 4 == small.index.item_vectors.nbytes
    _, rng, subspace, centres = two_stage_engine(1)
    for n in range(10):
        base = clustered_document(rng, subspace, centres, 50_000 + n)
        q = Document(key="opportunity:q", kind="opportunity", entity_id="q", fields=base.fields, vector=base.vector)
        for weight in (None, 0.0):
            want = small.rank(q, Filter(kind="profile"), limit=10, bm25_weight=weight).hits
            got = large.rank(q, Filter(kind="profile"), limit=10, bm25_weight=weight).hits
            dense = {h.key: h.dense for h in want}
            common = [h for h in got if h.key in dense]
            assert len(common) >= 8
            assert [h.dense for h in common] == pytest.approx([dense[h.key] for h in common], abs=2e-3)
            # The same documents, but for those within the quantisation error of the last place.
            clearly_in = {w.key for w in want if w.score > want[-1].score + 1e-2}
            assert clearly_in and clearly_in <= {h.key for h in got}
        stored = large.index.get("profile:00007")
        assert stored is not None and np.linalg.norm(stored.vector) == pytest.approx(1.0, abs=1e-5)
        assert float(stored.vector @ small.index.get("profile:00007").vector) > 0.999  # type: ignore[union-attr]


def test_profiles_whose_opportunity_items_are_patched_in_rank_as_in_a_fresh_index() -> None:
    """An opportunity's items patched into its owner's profile (added, changed, removed; the profile
    outgrowing its place, compactions between) give the ranking and explanations a fresh index gives."""
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(6, DIM))

    def unit(n: int) -> np.ndarray:
        v = (centres[rng.integers(0, len(centres), n)] + 0.8 * rng.normal(size=(n, DIM))).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def doc(i: int) -> Document:
        words = " ".join(TERMS[j] for j in rng.choice(len(TERMS), 3, replace=False))
        return Document(
            key=f"profile:{i:04d}", kind="profile", entity_id=f"{i:04d}", fields={"description": words}, vector=None
        )  # type: ignore[arg-type]

    e = Engine(dense_floor=0.0)
    e.index.two_stage_rows = 100
    live: dict[str, tuple[Document, dict[str, list[tuple[tuple[str, str, str], np.ndarray]]]]] = {}
    queries = unit(5)
    for i in range(200):
        d = doc(i)
        own = [((f"description#{j}", "description", f"description {j} of {i}"), v) for j, v in enumerate(unit(2))]
        e.upsert(d, own)
        live[d.key] = (d, {"": own})
    for round_ in range(4):
        for i in rng.choice(200, 150, replace=False).tolist():
            key = f"profile:{i:04d}"
            prefix = f"opportunity:{int(rng.integers(0, 6)):032x}#"
            n = int(rng.integers(0, 4))  # 0: the opportunity left the profile (or has no vector yet)
            items = [((f"{prefix}{j}", "opportunity", f"offer {prefix} {j}"), v) for j, v in enumerate(unit(n))]
            assert e.index.patch_items(key, prefix, items)
            live[key][1][prefix] = items
        e.index.merge()
        if round_ % 2:
            e.index.compact()
            assert e.index.dead_items == 0 and e.index.items == e.index.live_items
        basis = e.index.projection.basis if e.index.projection else None
        if basis is not None:
            n_items = e.index.items
            assert np.allclose(e.index.item_reduced[:n_items], e.index.item_vectors[:n_items] @ basis, atol=1e-5)
        assert e.index.live_items == sum(len(p) for _, parts in live.values() for p in parts.values())

        fresh = Engine(dense_floor=0.0)
        for d, parts in live.values():
            fresh.upsert(d, sorted((i for p in parts.values() for i in p), key=lambda i: i[0][0]))
        fresh.index.merge()
        for q in queries:
            query = Document(key="opportunity:q", kind="opportunity", entity_id="q", fields={}, vector=q)
            for method in ("max", "soft3"):
                got = exact(e, query, Filter(kind="profile"), limit=30, bm25_weight=0.0, aggregation=method)
                want = exact(fresh, query, Filter(kind="profile"), limit=30, bm25_weight=0.0, aggregation=method)
                assert [k for k, _ in got] == [k for k, _ in want]
                assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)
            best = e.rank(query, Filter(kind="profile"), limit=1, bm25_weight=0.0).hits[0]
            every = [i for p in live[best.key][1].values() for i in p]
            closest = every[int(np.argmax([float(v @ q) for _, v in every]))]
            assert best.item is not None and best.item[2] == closest[0][2]
