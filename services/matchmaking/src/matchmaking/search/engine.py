"""The ranking engine: hybrid BM25 + dense retrieval, fused, filtered, explained, nudged by feedback.

Fusion is a normalised weighted sum:

    dense    = aggregate(cosines of the query with each of the row's items)
    fused    = w · bm25 / max(bm25 over the eligible rows) + (1 − w) · max(0, (dense − f) / (1 − f))
    final    = fused + feedback

A row's items (its facets: description chunks, competences, projects,
opportunities — see ``document``) are embedded one by one; ``aggregate`` is
the maximum or a soft top-k of their cosines (``AGGREGATIONS``), and the
explanation names the item that matched best. A row without encoded items
(not yet reached by the encoder) scores by its one ``vector``. ``f`` is the
``dense_floor``: multilingual-e5 gives unrelated texts a cosine around 0.7, so
the cosine is rescaled to put that at 0 before it is weighed against BM25.

Up to ``Index.two_stage_rows`` rows (20,000), or when a filter leaves at most
``exact_rows`` eligible rows, it is computed for every eligible row, so the
ranking is exact. Above, the cosine of every row is first estimated from a
64-dimension projection of the vectors, and the ``shortlist`` (2,000) rows with
the best estimated fused score, plus every row with feedback, are rescored
exactly and ranked (the latency benchmark checks the top 20 against the exact
ranking).

``w`` is ``bm25_weight``, ``f``, the aggregation and the defaults below were
chosen on the training part of the labelled set in ``bench/matchmaking/data``
(1 gives BM25 only, 0 dense only — the quality harness compares them on the
held-out part). A weighted sum rather than reciprocal rank
fusion keeps the size of a lead: a candidate that is far ahead on one signal
stays ahead, and feedback (an additive score) has a predictable effect.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from matchmaking.search.document import Document, Filter
from matchmaking.search.domain import FeedbackWeights, calibrate, feedback_score, fuse
from matchmaking.search.index import Index, Item, group_aggregate

FIELD_LABELS = {
    "title": "title",
    "summary": "summary",
    "keywords": "keywords",
    "technology": "technology fields",
    "market": "market fields",
    "description": "description",
    "competences": "competences",
    "projects": "EU projects",
    "topic": "call topic",
}


MERGE_FRACTION = 8
"""The BM25 delta is merged when it holds this fraction of the index's rows (1/8), or the engine's
``merge_threshold`` if more: a build costs the whole index, so each write's share of the builds stays
the same as the index grows (at 20,000 rows a build every 500 writes cost each write 0.56 ms of CPU)."""

DEFAULT_BM25_WEIGHT = 0.5
DEFAULT_DENSE_FLOOR = 0.7
DEFAULT_AGGREGATION = "max"

AGGREGATIONS: dict[str, tuple[float, ...]] = {
    "max": (1.0,),
    "top2": (1.0, 1.0),
    "top3": (1.0, 1.0, 1.0),
    "soft3": (1.0, 0.5, 0.25),
}
"""Weights of a row's best, second, third … item cosine (normalised over the items it has)."""


def aggregate(sims: np.ndarray, counts: np.ndarray, method: str = DEFAULT_AGGREGATION) -> np.ndarray:
    """One score per group of consecutive ``sims`` (``counts[i]`` of them): max or soft top-k."""
    return group_aggregate(sims, counts, AGGREGATIONS[method])


def calibrated(dense: np.ndarray, floor: float) -> np.ndarray:
    """Cosines rescaled so that ``floor`` is 0 (clipped there) and 1 stays 1."""
    if floor <= 0:
        return np.clip(dense, 0, None)
    return np.clip((dense - np.float32(floor)) / np.float32(1 - floor), 0, None)


TIE_ROWS = 10_000
"""Rows tied at the last place of a page are all sorted by key up to this many (beyond, any of them)."""


@dataclass
class Hit:
    """One ranked result with its score parts and why it matched."""

    key: str
    kind: str
    entity_id: str
    bm25: float
    bm25_normalised: float
    dense: float
    fused: float
    feedback: float
    score: float
    explanation: dict[str, Any] = field(default_factory=dict)
    item: tuple[str, str, str, float] | None = None
    """The row's best-matching item: (key, kind, label, cosine), when it has encoded items."""


@dataclass
class Ranking:
    """A page of hits and how many rows were eligible."""

    hits: list[Hit]
    total: int
    seconds: float


class Feedback:
    """Feedback counts by pair and by counterpart, and which signal the votes favour (rebuilt from the
    database at start-up)."""

    def __init__(self) -> None:
        self.pairs: Counter[frozenset[str]] = Counter()
        self.counterparts: Counter[str] = Counter()
        self.lean = 0.0
        """Σ vote × (BM25 − calibrated cosine) of the voted matches: > 0 when BM25 was the better judge."""

    def add(self, query_key: str, candidate_key: str, delta: int, lean: float = 0.0) -> None:
        """Record (or, with a negative delta, undo) a useful (+1) / not useful (−1) vote.

        ``lean`` is the voted match's normalised BM25 minus its calibrated cosine
        (:meth:`Engine.lean_of`): a useful match that BM25 liked more than the
        embeddings moves the installation's fusion weight towards BM25, a match
        found not useful moves it away from the signal that proposed it.
        """
        self.pairs[frozenset((query_key, candidate_key))] += delta
        self.counterparts[candidate_key] += delta
        self.lean += delta * lean

    def clear(self) -> None:
        """Forget every vote."""
        self.pairs.clear()
        self.counterparts.clear()
        self.lean = 0.0


class Engine:
    """The index plus the scoring rules; one per running service."""

    def __init__(
        self,
        *,
        bm25_weight: float = DEFAULT_BM25_WEIGHT,
        feedback: FeedbackWeights | None = None,
        dense_floor: float = DEFAULT_DENSE_FLOOR,
        aggregation: str = DEFAULT_AGGREGATION,
    ) -> None:
        self.index = Index()
        self.bm25_weight = bm25_weight
        self.dense_floor = dense_floor
        """The cosine that counts as nothing in common (see the module's docstring)."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}")
        self.aggregation = aggregation
        self.feedback_rate = 0.02
        """How far one vote's lean moves the fusion weight."""
        self.weight_span = 0.2
        """Feedback moves the fusion weight at most this far from ``bm25_weight`` (and within [0, 1])."""
        self.feedback_weights = feedback or FeedbackWeights()
        self.feedback = Feedback()
        self.merge_threshold = 500
        self.on_merge_due: Callable[[], None] | None = None
        """Called, instead of merging at once, when a write leaves the BM25 delta at the threshold: the
        service's merge task then builds in a worker thread (a build costs the whole index, 0.3 s at
        20,000 rows, which the writing request would otherwise wait for with every other request of
        the event loop). None: merged at once."""
        self.eager_merge_rows = 5000
        """Up to this many rows a pending BM25 delta is merged before a query (exact scores, cheap build)."""
        self.exact_rows = 8192
        """Up to this many eligible rows, their exact cosines are computed directly (a selective filter)."""
        self.shortlist = 2000
        """Rows rescored exactly after the first stage (at least four times the requested depth)."""

    def lean_of(self, score_parts: dict[str, Any]) -> float:
        """Normalised BM25 minus calibrated cosine of a match's stored score parts (see ``Feedback.add``)."""
        try:
            bm25 = float(score_parts.get("bm25_normalised", 0.0))
            dense = float(score_parts.get("dense", 0.0))
        except (TypeError, ValueError):
            return 0.0
        return bm25 - calibrate(dense, self.dense_floor)

    def effective_weight(self) -> float:
        """The fusion weight of this installation: ``bm25_weight`` nudged by the feedback, bounded.

        A weight of exactly 0 or 1 (one signal only) is a deliberate choice and is not nudged."""
        if self.bm25_weight in (0.0, 1.0):
            return self.bm25_weight
        low = max(0.0, self.bm25_weight - self.weight_span)
        high = min(1.0, self.bm25_weight + self.weight_span)
        return min(high, max(low, self.bm25_weight + self.feedback_rate * self.feedback.lean))

    def upsert(self, doc: Document, items: list[Item] | None = None) -> None:
        """Index (or re-index) a document with its encoded items (None: its own vector as its one item);
        merges the BM25 delta when it grew too large (``MERGE_FRACTION``; or asks for it: ``on_merge_due``)."""
        self.index.upsert(doc, items)
        if len(self.index.delta) >= max(self.merge_threshold, self.index.size // MERGE_FRACTION):
            if self.on_merge_due is None:
                self.index.merge()
            else:
                self.on_merge_due()

    def remove(self, key: str) -> None:
        """Drop a document from the index."""
        self.index.remove(key)

    def rank(
        self,
        query: Document,
        flt: Filter,
        *,
        limit: int = 20,
        offset: int = 0,
        bm25_weight: float | None = None,
        explain: bool = True,
        focus_key: str | None = None,
        dense_floor: float | None = None,
        aggregation: str | None = None,
    ) -> Ranking:
        """The best rows passing ``flt`` for ``query`` (its own vector and terms).

        BM25 adds up only the postings of the query's terms. The dense cosine is
        exact for every eligible row when the filter leaves few of them (only
        those rows are read) or the index is small (one product over the matrix,
        read in place); over a large index it runs in two stages: a reduced
        matrix estimates every row's cosine, the ``shortlist`` rows with the best
        estimated fused score (and any with feedback) are rescored exactly, and
        only they are ranked. Explanations are built for the returned page only.
        """
        started = time.perf_counter()
        weight = self.effective_weight() if bm25_weight is None else bm25_weight
        floor = self.dense_floor if dense_floor is None else dense_floor
        method = self.aggregation if aggregation is None else aggregation
        index = self.index
        if index.dirty and index.size <= self.eager_merge_rows:
            index.merge()
        mask = index.mask(flt)
        total = int(np.count_nonzero(mask))
        if total == 0 or offset >= total:
            return Ranking([], total, time.perf_counter() - started)
        query_terms = query.tokens()
        if weight > 0:
            bm25_all = index.bm25(query_terms)
            top = float(np.max(bm25_all, where=mask, initial=0.0))
        else:
            bm25_all, top = None, 0.0
        boosts = self._feedback_scores(query.key, mask)
        k = min(total, offset + limit)

        if focus_key is not None:
            # Score one candidate exactly as it would rank among all the eligible ones.
            row = index.row_of.get(focus_key)
            rows = np.array([row] if row is not None and mask[row] else [], dtype=np.int64)
            dense = index.dense(query.vector, rows) if weight < 1 else np.zeros(rows.size, dtype=np.float32)
        elif weight >= 1:
            # BM25 only: the rows with a positive score, unless they do not fill the page.
            assert bm25_all is not None
            matching = mask & (bm25_all > 0)
            rows = np.flatnonzero(matching if np.count_nonzero(matching) >= k else mask)
            dense = np.zeros(rows.size, dtype=np.float32)
        elif total <= self.exact_rows:
            # A selective filter: the exact cosine of just the eligible rows.
            rows = np.flatnonzero(mask)
            dense = index.dense(query.vector, rows)
        else:
            approx = index.dense_approx(query.vector)
            if approx is None:
                rows = np.flatnonzero(mask)
                dense = index.dense(query.vector)[rows]
            else:
                rows = self._shortlist(approx, bm25_all, top, weight, floor, mask, boosts, max(self.shortlist, 4 * k))
                dense = index.dense(query.vector, rows)
        if weight < 1 and rows.size:
            dense = self._item_dense(query.vector, rows, dense, method)
        if bm25_all is not None:
            bm25 = bm25_all[rows]
            bm25_norm = bm25 / top if top > 0 else np.zeros_like(bm25)
        else:
            bm25 = bm25_norm = np.zeros(rows.size, dtype=np.float32)
        fused = weight * bm25_norm + (1 - weight) * calibrated(dense, floor)
        final = fused.astype(np.float64)
        boost_at = np.zeros(rows.size, dtype=np.float64)
        if boosts:
            for pos, row in enumerate(rows.tolist()):
                boost_at[pos] = boosts.get(row, 0.0)
            final += boost_at
        k = min(k, rows.size)
        if focus_key is not None or rows.size == 0:
            order = np.arange(rows.size)
        else:
            # Ties broken by key, so the same data gives the same ranking whatever the load order:
            # every row tied with the k-th score is sorted with the top k (unless the tie is huge).
            rounded = np.round(final, 9)
            part = np.argpartition(-rounded, k - 1)[:k] if k < rows.size else np.arange(rows.size)
            if k < rows.size:
                tied = np.flatnonzero(rounded >= rounded[part].min())
                if tied.size <= TIE_ROWS:
                    part = tied
            keys = np.array([index.keys[int(rows[p])] for p in part])
            order = part[np.lexsort((keys, -rounded[part]))][offset:k]
        hits = []
        query_set = set(query_terms)
        for pos in order.tolist():
            row = int(rows[pos])
            key, rec = index.keys[row], index.records[row]
            assert key is not None and rec is not None
            hit = Hit(
                key=key,
                kind=rec.kind,
                entity_id=rec.entity_id,
                bm25=round(float(bm25[pos]), 6),
                bm25_normalised=round(float(bm25_norm[pos]), 6),
                dense=round(float(dense[pos]), 6),
                fused=round(fuse(float(bm25_norm[pos]), float(dense[pos]), weight, floor), 6),
                feedback=round(float(boost_at[pos]), 6),
                score=round(float(final[pos]), 6),
                item=index.best_item(query.vector, key) if weight < 1 else None,
            )
            if explain:
                # Only the returned page's documents are read back (texts decompressed, terms worked out again).
                hit.explanation = explain_match(query, index.document(row), query_set, hit)
            hits.append(hit)
        return Ranking(hits, total, time.perf_counter() - started)

    def _item_dense(self, vector: np.ndarray, rows: np.ndarray, dense: np.ndarray, method: str) -> np.ndarray:
        """``dense`` (the best item's cosine per row, from the index) under another aggregation."""
        weights = AGGREGATIONS[method]
        if len(weights) == 1 or rows.size == 0:
            return dense
        return self.index.dense(vector, rows, weights)

    @staticmethod
    def _shortlist(
        approx: np.ndarray,
        bm25: np.ndarray | None,
        top: float,
        weight: float,
        floor: float,
        mask: np.ndarray,
        boosts: dict[int, float],
        size: int,
    ) -> np.ndarray:
        """The eligible rows with the best estimated fused scores, plus every row with feedback.

        The estimate is each row's best item cosine in the reduced space: a row whose best item's exact
        cosine is much higher than its estimate can be missed (the latency benchmark reports how often the
        top 20 differs from the exact one).
        """
        estimate = calibrated(approx, floor)
        estimate *= 1 - weight
        if bm25 is not None and top > 0:
            estimate += bm25 * np.float32(weight / top)
        estimate[~mask] = -np.inf
        size = min(size, estimate.size)
        rows = np.argpartition(-estimate, size - 1)[:size] if size < estimate.size else np.arange(estimate.size)
        rows = rows[mask[rows]]
        if boosts:
            rows = np.union1d(rows, np.fromiter(boosts, dtype=np.int64))
        return np.sort(rows)

    def _feedback_scores(self, query_key: str, mask: np.ndarray) -> dict[int, float]:
        """row → feedback score, for the eligible rows with any."""
        fb = self.feedback
        if not fb.counterparts:
            return {}
        keys = set(fb.counterparts)
        for pair in fb.pairs:
            if query_key in pair:
                keys |= pair
        out: dict[int, float] = {}
        rows = self.index.row_of
        for key in keys:
            row = rows.get(key)
            if row is None or not mask[row]:
                continue
            pair_net = fb.pairs.get(frozenset((query_key, key)), 0)
            score = feedback_score(pair_net, fb.counterparts.get(key, 0), self.feedback_weights)
            if score:
                out[row] = score
        return out


def explain_match(query: Document, doc: Document, query_terms: set[str], hit: Hit) -> dict[str, Any]:
    """Which fields and terms matched, shared sectors and keywords, and a sentence saying so."""
    fields: dict[str, list[str]] = {}
    words = doc.field_words()
    for name, terms in doc.field_terms().items():
        common = sorted(dict.fromkeys(words[name][t] for t in query_terms & terms))
        if common:
            fields[FIELD_LABELS.get(name, name)] = common[:12]
    query_keywords = {k.strip().lower() for k in query.fields.get("keywords", "").split(";") if k.strip()}
    doc_keywords = {k.strip().lower() for k in doc.fields.get("keywords", "").split(";") if k.strip()}
    shared_keywords = sorted(query_keywords & doc_keywords)
    shared_sectors = sorted(set(query.sectors) & set(doc.sectors))
    parts = []
    if fields:
        best = sorted(fields.items(), key=lambda kv: -len(kv[1]))[:3]
        parts.append("; ".join(f"{label}: {', '.join(terms[:5])}" for label, terms in best))
    if shared_keywords:
        parts.append(f"shared keywords: {', '.join(shared_keywords)}")
    if shared_sectors:
        parts.append(f"same sectors: {', '.join(shared_sectors)}")
    matched_item = None
    if hit.item is not None:
        key, kind, label, similarity = hit.item
        matched_item = {"key": key, "kind": kind, "label": label, "similarity": similarity}
        parts.append(f"closest part: {label} ({similarity:.2f})")
    parts.append(f"semantic similarity {hit.dense:.2f}")
    if hit.feedback:
        parts.append(f"feedback {'+' if hit.feedback > 0 else ''}{hit.feedback:.2f}")
    return {
        "matched_fields": fields,
        "shared_keywords": shared_keywords,
        "shared_sectors": shared_sectors,
        "matched_item": matched_item,
        "summary": "Matched on " + " · ".join(parts),
    }


def valid_filter_day(today: date, include_expired: bool) -> date | None:
    """The day rows must be valid on (None when expired rows are wanted too)."""
    return None if include_expired else today
