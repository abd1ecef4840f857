# Split once: its terms (text.py) and its document and filter (document.py) live apart; what stays
# here is one Index whose BM25 side, dense side and filter columns share private state (the row
# arrays, the cached masks, the delta), so they are kept together in one class.
"""The in-memory search index: BM25 (bm25s) + dense vectors (numpy) + filter columns.

One row per document (an opportunity or a competence profile). For speed at
100,000 rows every filter is a numpy column (a filter's mask is cached until
the next write), BM25 reads only the postings of the query's terms, and the
dense scores come from a contiguous float32 matrix read in place: every row
exactly on a small index, the eligible rows only under a selective filter, and
on a large index (``two_stage_rows``) a first pass over a reduced matrix
(``REDUCED_DIM`` principal directions, refitted at a build when the index has
doubled, kept up to date by every write) to shortlist the rows to score exactly.

BM25 and incremental updates: bm25s builds an immutable sparse index. Rows
added or changed since the last build form a small *delta*: they are scored
exactly with the same Lucene BM25 formula, using the main index's document
frequencies and average length (a new term counts as df = 0 until the next
build). Once the delta passes a threshold (or on the periodic merge job) the
main index is rebuilt from every row's tokens and the delta is emptied. Removed
rows are tombstoned (``alive`` = False) and dropped at the next build's
compaction-free rebuild (they score zero and never pass the filter).

Items: a document's dense side is a set of *items* (an opportunity, a profile's
description or one of its projects), each with its own vector in one item
matrix; a document's dense score is the best of its items' cosines (its row of
``slots`` names its item rows, -1 where unused). A document whose items are not
encoded yet has no item rows: its dense score is 0 and BM25 alone finds it.
Past ``COMPACT_ROWS`` documents the item matrix is held in float16 (half the
memory; the exact rescoring converts the few rows it reads).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import bm25s
import numpy as np

from matchmaking.search.document import Document, Filter
from matchmaking.search.embeddings import DIM

K1 = 1.5
B = 0.75


OPPORTUNITY = 0
PROFILE = 1
KINDS = {"opportunity": OPPORTUNITY, "profile": PROFILE}
NO_EXPIRY = np.iinfo(np.int32).max


class _Codes:
    """Small integer codes for the values of a categorical column."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def code(self, value: str | None) -> int:
        if value is None:
            return -1
        return self.codes.setdefault(value, len(self.codes))

    def lookup(self, value: str) -> int:
        return self.codes.get(value, -2)


@dataclass
class _Main:
    """The immutable BM25 index of the rows that existed at the last build.

    The postings are bm25s's precomputed per-term scores (a CSC matrix: ``indptr``
    per term id, ``rows`` and ``data`` per posting), with the bm25s document
    numbers already mapped to index rows, so a query adds up only the postings of
    its own terms straight into a row-aligned score vector.
    """

    vocab: dict[str, int] = field(default_factory=dict)
    indptr: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    rows_of_postings: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    data: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    rows: int = 0
    df: dict[str, int] = field(default_factory=dict)
    avgdl: float = 1.0
    docs: int = 0


@dataclass
class Projection:
    """A reduced-dimension view of the vectors for the first stage of a large dense search.

    ``basis`` holds the top principal directions (uncentred: the eigenvectors of
    ``XᵀX`` over a sample of rows), so ``(x·P)·(q·P)`` approximates the cosine
    ``x·q`` with the residual ``‖x − xPPᵀ‖·‖q − qPPᵀ‖`` as its worst-case error.
    """

    basis: np.ndarray
    """``(DIM × REDUCED_DIM)`` float32, orthonormal columns."""
    fitted_rows: int
    """How many rows the index had when the basis was fitted (refitted when it doubles)."""


@dataclass
class Snapshot:
    """What a build needs, taken on the caller's thread (the build may run in another)."""

    rows: int
    tokens: list[list[str]]
    marks: dict[int, int]
    vectors: np.ndarray | None = None
    """The item vector matrix when the dense projection is to be (re)fitted, else None."""
    items: int = 0
    """Item rows in use when the snapshot was taken."""


@dataclass
class Built:
    """The result of a build, swapped in by :meth:`Index.install`."""

    main: _Main
    marks: dict[int, int]
    rows: int
    projection: Projection | None = None
    reduced: np.ndarray | None = None
    """``item_vectors[:items] @ projection.basis`` when the projection was refitted."""
    items: int = 0


REDUCED_DIM = 96
"""Dimensions of the first-stage dense matrix (384 → 96: a quarter of the memory read per query)."""
TWO_STAGE_ROWS = 20_000
"""From this many rows on, the dense search runs in two stages (reduced matrix, then exact rescoring)."""
PROJECTION_SAMPLE = 16_384
"""Rows sampled to fit the projection."""
COMPACT_ROWS = 50_000
"""From this many documents on, item vectors are stored in float16 (once the projection exists)."""
ItemMeta = tuple[str, str, str]
"""What the index keeps of an item besides its vector: key, kind, label (for explanations)."""
Item = tuple[ItemMeta, np.ndarray]
"""An encoded item of a document: its key, kind and label, and its unit vector."""


def fit_projection(vectors: np.ndarray, dims: int = REDUCED_DIM) -> np.ndarray:
    """The top ``dims`` principal directions (uncentred) of the rows of ``vectors``."""
    rows = vectors.shape[0]
    step = max(1, rows // PROJECTION_SAMPLE)
    sample = np.ascontiguousarray(vectors[::step][:PROJECTION_SAMPLE], dtype=np.float64)
    _, eigvecs = np.linalg.eigh(sample.T @ sample)
    return np.ascontiguousarray(eigvecs[:, ::-1][:, :dims], dtype=np.float32)


def project(vectors: np.ndarray, basis: np.ndarray, chunk: int = 16_384) -> np.ndarray:
    """``vectors @ basis`` in chunks (no large float temporaries)."""
    out = np.empty((vectors.shape[0], basis.shape[1]), dtype=np.float32)
    for start in range(0, vectors.shape[0], chunk):
        np.dot(vectors[start : start + chunk].astype(np.float32, copy=False), basis, out=out[start : start + chunk])
    return out


class Index:
    """Rows of documents with BM25, dense and filter columns."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self.size = 0
        self.item_capacity = capacity
        self.items = 0
        """Item rows in use (a high-water mark: freed rows are reused)."""
        self.item_vectors = np.zeros((capacity, DIM), dtype=np.float32)
        """Item vectors, C-contiguous: ``item_vectors[:items]`` is a view, never copied by a query."""
        self.item_reduced = np.zeros((capacity, REDUCED_DIM), dtype=np.float32)
        """``item_vectors @ projection.basis`` (kept up to date by every write once a projection exists)."""
        self.item_meta: list[ItemMeta | None] = []
        self.free_items: list[int] = []
        self.slots = np.full((capacity, 1), -1, dtype=np.int32)
        """Item rows of each document row (-1: unused slot)."""
        self._written_items: set[int] = set()
        """Item rows written since the last snapshot (projected again when a refitted basis is installed)."""
        self.compact_rows = COMPACT_ROWS
        self.projection: Projection | None = None
        self.alive = np.zeros(capacity, dtype=bool)
        self.active = np.zeros(capacity, dtype=bool)
        self.kind = np.full(capacity, -1, dtype=np.int8)
        self.opp_type = np.full(capacity, -1, dtype=np.int16)
        self.org_kind = np.full(capacity, -1, dtype=np.int16)
        self.country = np.full(capacity, -1, dtype=np.int16)
        self.owner = np.full(capacity, -1, dtype=np.int32)
        self.sectors = np.zeros(capacity, dtype=np.uint64)
        self.expires = np.full(capacity, NO_EXPIRY, dtype=np.int32)
        self.docs: list[Document | None] = []
        self.row_of: dict[str, int] = {}
        self.tokens: list[list[str]] = []
        self.delta: dict[int, tuple[Counter[str], int, int]] = {}
        """row → (term counts, length, version) of rows changed since the last BM25 build."""
        self._version = 0
        self.stale = False
        """A row was removed since the last build (its terms still weigh in the main index's statistics)."""
        self.main = _Main()
        self._codes = {name: _Codes() for name in ("type", "kind", "country", "owner", "sector")}
        self._masks: dict[tuple[object, ...], np.ndarray] = {}
        """Filter masks (without the per-query owner/key exclusions), valid until the next write."""
        self.two_stage_rows = TWO_STAGE_ROWS
        """From this many rows on, builds fit the dense projection and queries search in two stages."""

    # -- writes --------------------------------------------------------------------

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        new = max(needed, self.capacity * 2)
        for name in (
            "slots",
            "alive",
            "active",
            "kind",
            "opp_type",
            "org_kind",
            "country",
            "owner",
            "sectors",
        ):
            old = getattr(self, name)
            fill = {"kind": -1, "opp_type": -1, "org_kind": -1, "country": -1, "owner": -1, "slots": -1}.get(name, 0)
            # np.zeros leaves the pages beyond the rows in use untouched (not resident) until written.
            shape = (new, *old.shape[1:])
            arr = np.zeros(shape, dtype=old.dtype) if fill == 0 else np.full(shape, fill, old.dtype)
            arr[: self.size] = old[: self.size]
            setattr(self, name, arr)
        expires = np.full(new, NO_EXPIRY, dtype=np.int32)
        expires[: self.size] = self.expires[: self.size]
        self.expires = expires
        self.capacity = new

    def _grow_items(self, needed: int) -> None:
        if needed <= self.item_capacity:
            return
        new = max(needed, self.item_capacity * 2)
        for name in ("item_vectors", "item_reduced"):
            old = getattr(self, name)
            arr = np.zeros((new, old.shape[1]), dtype=old.dtype)
            arr[: self.items] = old[: self.items]
            setattr(self, name, arr)
        self.item_capacity = new

    def _set_items(self, row: int, items: list[Item]) -> None:
        """Replace the item rows of document ``row`` (freed rows are reused by later writes)."""
        old = self.slots[row]
        for item_row in old[old >= 0].tolist():
            self.item_meta[item_row] = None
            self.free_items.append(item_row)
        old[:] = -1
        if len(items) > self.slots.shape[1]:
            wider = np.full((self.capacity, len(items)), -1, dtype=np.int32)
            wider[:, : self.slots.shape[1]] = self.slots
            self.slots = wider
        for slot, (meta, vector) in enumerate(items):
            if self.free_items:
                item_row = self.free_items.pop()
            else:
                item_row = self.items
                self._grow_items(item_row + 1)
                self.items += 1
                self.item_meta.append(None)
            self.item_meta[item_row] = meta
            self.item_vectors[item_row] = vector
            if self.projection is not None:
                np.dot(
                    self.item_vectors[item_row].astype(np.float32),
                    self.projection.basis,
                    out=self.item_reduced[item_row],
                )
            self._written_items.add(item_row)
            self.slots[row, slot] = item_row

    def _sector_bits(self, sectors: Iterable[str]) -> int:
        bits = 0
        for s in sectors:
            # 64 bits: beyond 63 distinct sectors, codes share bits (a filter may then admit a near miss).
            bits |= 1 << (self._codes["sector"].code(s) % 64)
        return bits

    def upsert(self, doc: Document, items: list[Item] | None = None) -> None:
        """Add or replace a document (it joins the BM25 delta until the next build).

        ``items`` are its encoded items; None: the document's own encoded items when it carries
        them (``doc.items`` / ``doc.item_vectors``), else its own vector as its one item."""
        row = self.row_of.get(doc.key)
        if row is None:
            row = self.size
            self._grow(row + 1)
            self.size += 1
            self.docs.append(doc)
            self.tokens.append([])
            self.row_of[doc.key] = row
        self.docs[row] = doc
        if items is None and doc.items and doc.item_vectors is not None:
            encoded, matrix = doc.encoded_items()
            items = [((i.key, i.kind, i.label), matrix[n]) for n, i in enumerate(encoded)]
        elif items is None:
            vector = np.asarray(doc.vector, dtype=np.float32) if doc.vector is not None else None
            items = [((doc.key, doc.kind, ""), vector)] if vector is not None and vector.any() else []
        self._set_items(row, items)
        self.alive[row] = True
        self.active[row] = doc.active
        self.kind[row] = KINDS[doc.kind]
        self.opp_type[row] = self._codes["type"].code(doc.opportunity_type)
        self.org_kind[row] = self._codes["kind"].code(doc.org_kind)
        self.country[row] = self._codes["country"].code(doc.country)
        self.owner[row] = self._codes["owner"].code(doc.owner_id)
        self.sectors[row] = np.uint64(self._sector_bits(doc.sectors))
        self.expires[row] = doc.expires_on.toordinal() if doc.expires_on else NO_EXPIRY
        tokens = doc.tokens()
        self.tokens[row] = tokens
        self._version += 1
        self.delta[row] = (Counter(tokens), len(tokens), self._version)
        self._masks.clear()

    def set_items(self, key: str, items: list[Item]) -> bool:
        """Replace a document's encoded items without touching its text (no BM25 change)."""
        row = self.row_of.get(key)
        if row is None:
            return False
        self._set_items(row, items)
        return True

    def set_active(self, key: str, active: bool, expires_on: date | None = None) -> bool:
        """Change a document's status/expiry without touching its text (no BM25 change)."""
        row = self.row_of.get(key)
        doc = self.docs[row] if row is not None else None
        if row is None or doc is None:
            return False
        doc.active = active
        self.active[row] = active
        if expires_on is not None:
            doc.expires_on = expires_on
            self.expires[row] = expires_on.toordinal()
        self._masks.clear()
        return True

    def remove(self, key: str) -> bool:
        """Tombstone a document."""
        row = self.row_of.pop(key, None)
        if row is None:
            return False
        self.alive[row] = False
        self.stale = True
        self._set_items(row, [])
        self.docs[row] = None
        self.tokens[row] = []
        self.delta.pop(row, None)
        self._masks.clear()
        return True

    def get(self, key: str) -> Document | None:
        """The document stored under ``key``."""
        row = self.row_of.get(key)
        return self.docs[row] if row is not None else None

    # -- build --------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """True when the main BM25 index no longer reflects every row exactly."""
        return bool(self.delta) or self.stale

    def _projection_due(self) -> bool:
        if self.size < self.two_stage_rows:
            return False
        return self.projection is None or self.size >= 2 * self.projection.fitted_rows

    def snapshot(self) -> Snapshot:
        """What a build needs, taken on the caller's thread (the build may run in another)."""
        marks = {row: entry[2] for row, entry in self.delta.items()}
        # The matrix itself, not a copy: item rows written during the build are re-projected at install.
        vectors = self.item_vectors[: self.items] if self._projection_due() else None
        self._written_items.clear()
        return Snapshot(self.size, list(self.tokens[: self.size]), marks, vectors, self.items)

    @staticmethod
    def build(snapshot: Snapshot) -> Built:
        """The BM25 postings over the snapshot's tokens, and the dense projection when due.

        CPU-heavy; safe to run in a worker thread.
        """
        projection = reduced = None
        if snapshot.vectors is not None:
            basis = fit_projection(snapshot.vectors)
            projection = Projection(basis, snapshot.rows)
            reduced = project(snapshot.vectors, basis)
        main = build_main(snapshot.rows, snapshot.tokens)
        return Built(main, snapshot.marks, snapshot.rows, projection, reduced, snapshot.items)

    def install(self, built: Built) -> None:
        """Swap in a build; rows changed again since the snapshot stay in the delta."""
        self.main = built.main
        self.stale = False
        for row, mark in built.marks.items():
            entry = self.delta.get(row)
            if entry is not None and entry[2] == mark:
                del self.delta[row]
        if built.projection is not None and built.reduced is not None:
            self.projection = built.projection
            self.item_reduced[: built.items] = built.reduced
            # Item rows written while the build ran: project them with the new basis.
            changed = sorted(self._written_items | set(range(built.items, self.items)))
            if changed:
                rows = np.asarray(changed, dtype=np.int64)
                self.item_reduced[rows] = self.item_vectors[rows].astype(np.float32) @ built.projection.basis
        if self.projection is not None and self.size >= self.compact_rows and self.item_vectors.dtype != np.float16:
            # A large index: the exact vectors are read only for a shortlist, half their memory suffices.
            self.item_vectors = self.item_vectors.astype(np.float16)

    def merge(self) -> None:
        """Rebuild the BM25 index (and the dense projection when due) now, synchronously."""
        self.install(self.build(self.snapshot()))

    # -- reads ------------------------------------------------------------------------

    @property
    def documents(self) -> int:
        """Live documents."""
        return len(self.row_of)

    def count(self, kind: str) -> int:
        """Live documents of one kind."""
        n = self.size
        return int(np.count_nonzero(self.alive[:n] & (self.kind[:n] == KINDS[kind])))

    def _base_mask(self, f: Filter) -> np.ndarray:
        """The mask of ``f`` without its owner/key exclusions (cached until the next write)."""
        cache_key = (f.kind, f.opportunity_types, f.org_kinds, f.country, f.sectors, f.valid_on, self.size)
        cached = self._masks.get(cache_key)
        if cached is not None:
            return cached
        n = self.size
        m = self.alive[:n] & (self.kind[:n] == KINDS[f.kind])
        if f.opportunity_types is not None:
            codes = [self._codes["type"].lookup(t) for t in f.opportunity_types]
            m &= np.isin(self.opp_type[:n], codes)
        if f.org_kinds is not None:
            codes = [self._codes["kind"].lookup(k) for k in f.org_kinds]
            m &= np.isin(self.org_kind[:n], codes)
        if f.country is not None:
            m &= self.country[:n] == self._codes["country"].lookup(f.country)
        if f.sectors is not None:
            bits = 0
            for s in f.sectors:
                code = self._codes["sector"].lookup(s)
                if code >= 0:
                    bits |= 1 << (code % 64)
            m &= (self.sectors[:n] & np.uint64(bits)) != 0
        if f.valid_on is not None:
            m &= self.active[:n] & (self.expires[:n] >= f.valid_on.toordinal())
        if len(self._masks) >= 64:
            self._masks.pop(next(iter(self._masks)))
        self._masks[cache_key] = m
        return m

    def mask(self, f: Filter) -> np.ndarray:
        """Boolean mask over the rows that pass ``f`` (a fresh array the caller may keep)."""
        m = self._base_mask(f).copy()
        if f.exclude_owner is not None:
            code = self._codes["owner"].lookup(f.exclude_owner)
            if code >= 0:
                m &= self.owner[: self.size] != code
        if f.exclude_key is not None and f.exclude_key in self.row_of:
            m[self.row_of[f.exclude_key]] = False
        return m

    def bm25(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 of every row for the (deduplicated) query terms: only their postings are read."""
        n = self.size
        scores = np.zeros(n, dtype=np.float32)
        terms = list(dict.fromkeys(query_tokens))
        main = self.main
        for term in terms:
            tid = main.vocab.get(term)
            if tid is None:
                continue
            start, end = int(main.indptr[tid]), int(main.indptr[tid + 1])
            # A term's postings name each row once, so a fancy-indexed += adds up correctly.
            scores[main.rows_of_postings[start:end]] += main.data[start:end]
        if self.delta:
            idf = {t: math.log(1 + (main.docs - main.df.get(t, 0) + 0.5) / (main.df.get(t, 0) + 0.5)) for t in terms}
            for row, (tf, dl, _) in self.delta.items():
                norm = K1 * (1 - B + B * dl / main.avgdl)
                scores[row] = sum(idf[t] * tf[t] / (tf[t] + norm) for t in terms if t in tf)
        return scores

    def _aggregate(
        self, item_scores: np.ndarray, rows: np.ndarray | None, weights: tuple[float, ...] = (1.0,)
    ) -> np.ndarray:
        """Each document's aggregate of its items' scores (0 for a document with no encoded item).

        ``item_scores`` has one score per item row plus a last entry, -inf, that the unused
        slots (-1) pick up. ``weights``: of the best, second, third … item (one weight: the max;
        more: a weighted mean over the items a document has, normalised by the weights used)."""
        slots = self.slots[: self.size] if rows is None else self.slots[rows]
        scores = item_scores[slots]
        if len(weights) == 1:
            best = scores.max(axis=1)
            best[np.isneginf(best)] = 0.0
            return best
        ranked = -np.sort(-scores, axis=1)[:, : len(weights)]
        present = np.isfinite(ranked)
        w = np.zeros(ranked.shape[1], dtype=np.float32)
        w[: min(len(weights), ranked.shape[1])] = weights[: ranked.shape[1]]
        used = present * w
        total = used.sum(axis=1)
        sums = np.where(present, ranked, 0.0) @ w if ranked.size else np.zeros(ranked.shape[0], np.float32)
        return np.where(total > 0, sums / np.where(total > 0, total, 1.0), 0.0).astype(np.float32)

    def dense(
        self, vector: np.ndarray, rows: np.ndarray | None = None, weights: tuple[float, ...] = (1.0,)
    ) -> np.ndarray:
        """Aggregated item cosine with ``vector`` of every document row, or of ``rows`` only (unit vectors):
        the best item's by default (see :meth:`_aggregate` for ``weights``)."""
        q = np.asarray(vector, dtype=np.float32)
        scores = np.full(self.items + 1, -np.inf, dtype=np.float32)
        if rows is None:
            if self.item_vectors.dtype == np.float32:
                scores[: self.items] = self.item_vectors[: self.items] @ q
            else:
                for start in range(0, self.items, 65_536):
                    end = min(self.items, start + 65_536)
                    scores[start:end] = self.item_vectors[start:end].astype(np.float32) @ q
            return self._aggregate(scores, None, weights)
        slots = self.slots[rows]
        used = slots[slots >= 0]
        scores[used] = self.item_vectors[used].astype(np.float32, copy=False) @ q
        return self._aggregate(scores, rows, weights)

    def best_item(self, vector: np.ndarray, key: str) -> tuple[str, str, str, float] | None:
        """The item of document ``key`` closest to ``vector``: key, kind, label, cosine (None: none encoded)."""
        row = self.row_of.get(key)
        if row is None:
            return None
        used = self.slots[row][self.slots[row] >= 0]
        if used.size == 0:
            return None
        scores = self.item_vectors[used].astype(np.float32, copy=False) @ np.asarray(vector, dtype=np.float32)
        best = int(np.argmax(scores))
        meta = self.item_meta[int(used[best])] or ("", "", "")
        return meta[0], meta[1], meta[2], round(float(scores[best]), 6)

    def item_count(self, key: str) -> int:
        """Encoded items of document ``key`` in the index."""
        row = self.row_of.get(key)
        return 0 if row is None else int(np.count_nonzero(self.slots[row] >= 0))

    def dense_approx(self, vector: np.ndarray) -> np.ndarray | None:
        """First-stage cosine estimate of every row from the reduced matrix.

        None when the index is below ``two_stage_rows`` or has no projection yet
        (then the exact cosines are computed).
        """
        if self.projection is None or self.size < self.two_stage_rows:
            return None
        q = np.asarray(vector, dtype=np.float32) @ self.projection.basis
        scores = np.full(self.items + 1, -np.inf, dtype=np.float32)
        scores[: self.items] = self.item_reduced[: self.items] @ q
        return self._aggregate(scores, None)


def build_main(rows: int, tokens: list[list[str]]) -> _Main:
    """A bm25s build over ``tokens`` (removed rows, with no tokens, are left out of N and avgdl)."""
    df: Counter[str] = Counter()
    total = 0
    live = [row for row, doc in enumerate(tokens) if doc]
    for row in live:
        df.update(set(tokens[row]))
        total += len(tokens[row])
    if not live:
        return _Main(rows=rows)
    retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
    retriever.index([tokens[row] for row in live], show_progress=False)
    scores = retriever.scores
    row_ids = np.asarray(live, dtype=np.int64)
    return _Main(
        vocab=dict(retriever.vocab_dict),
        indptr=np.asarray(scores["indptr"], dtype=np.int64),
        rows_of_postings=row_ids[np.asarray(scores["indices"], dtype=np.int64)].astype(np.int32),
        data=np.asarray(scores["data"], dtype=np.float32),
        rows=rows,
        df=dict(df),
        avgdl=total / len(live),
        docs=len(live),
    )
