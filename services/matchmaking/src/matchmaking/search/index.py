# Split once: its terms (text.py) and its document and filter (document.py) live apart; what stays
# here is one Index whose BM25 side, dense side and filter columns share private state (the row
# arrays, the item layout, the cached masks, the delta), so they are kept together in one class.
"""The in-memory search index: BM25 (bm25s) + dense item vectors (numpy) + filter columns.

One row per document (an opportunity or a competence profile). For speed at
100,000 rows every filter is a numpy column (a filter's mask is cached until
the next write), BM25 reads only the postings of the query's terms, and the
dense scores come from a contiguous item matrix read in place: every item
exactly on a small index, the eligible rows' items only under a selective
filter, and on a large index (``two_stage_rows``) a first pass over a reduced
matrix (``REDUCED_DIM`` principal directions, refitted at a build when the index
has doubled, kept up to date by every write) to shortlist the rows to score exactly.

Memory: a row keeps no Python object per term or per item. Its BM25 terms are
one ``bytes`` of int32 term ids (one vocabulary for the index), its texts one
JSON (zlib-compressed when not short) (decompressed for the few rows an explanation shows, their
terms worked out again with the stored per-field languages), its items' keys,
kinds and labels one JSON string; a document's own vector (what it searches
with as a query) is the mean of its item rows, worked out when it is asked for.

BM25 and incremental updates: bm25s builds an immutable sparse index. Rows
added or changed since the last build form a small *delta*: they are scored
exactly with the same Lucene BM25 formula, using the main index's document
frequencies and average length (a new term counts as df = 0 until the next
build). Once the delta passes a threshold (or on the periodic merge job) the
main index is rebuilt from every row's terms and the delta is emptied. Removed
rows are tombstoned (``alive`` = False) and left out of the next build (they
score zero and never pass the filter).

Items: a document's dense side is a set of *items* (an opportunity, a profile's
description chunk or one of its projects), each with its own vector in one item
matrix. A document's items are *contiguous* rows ``[item_start, item_start +
item_count)`` (a shortlist's items are gathered as ranges and aggregated with
``reduceat``), and every item row names its document (``item_owner``), so the
best item of every document is one ``np.maximum.at`` over all item scores. A
document whose items grow beyond their place moves to the end of the matrix;
the rows it leaves (and the tail of a shrunk document) are dead (owner -1) and
are compacted away at a build once they are many.
A document whose items are not encoded yet has none: its dense score is 0 and
BM25 alone finds it. Past ``COMPACT_ROWS`` documents the item matrix is held in
int8 with one scale per row (a quarter of the memory of float32; the exact
rescoring converts the few rows it reads, a cosine moves by about 1e-3).
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import bm25s
import numpy as np

from matchmaking.search.document import Document, Filter, centroid
from matchmaking.search.embeddings import DIM

K1 = 1.5
B = 0.75


OPPORTUNITY = 0
PROFILE = 1
KINDS = {"opportunity": OPPORTUNITY, "profile": PROFILE}
NO_EXPIRY = np.iinfo(np.int32).max
PACK_RAW_BELOW = 512
"""A document's fields shorter than this (as JSON bytes) are kept uncompressed."""


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
    tokens: list[bytes]
    """Each row's term ids (int32 bytes)."""
    terms: list[str]
    """Term id → term (append-only: the ids of the snapshot stay valid)."""
    marks: dict[int, int]
    vectors: np.ndarray | None = None
    """The item vector matrix when the dense projection is to be (re)fitted, else None."""
    items: int = 0
    """Item rows in use when the snapshot was taken."""
    layout: int = 0
    """The item layout's generation (a compaction since the snapshot moves item rows)."""
    scales: np.ndarray | None = None
    """Each item row's scale when the matrix is int8."""
    reduced_dim: int = 0
    """Dimensions of the projection to fit."""


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
    layout: int = 0


@dataclass(slots=True)
class Stored:
    """What the index keeps of one document besides its terms, vectors and filter columns."""

    kind: str
    entity_id: str
    fields: bytes
    """The document's fields as JSON, zlib-compressed from ``PACK_RAW_BELOW`` bytes (read back for an
    explanation or a query)."""
    langs: str
    """The language of each field, in field order, comma-separated."""
    lang: str | None
    opportunity_type: str | None
    org_kind: str | None
    sectors: tuple[str, ...]
    country: str | None
    owner_id: str | None
    expires_on: date | None
    active: bool
    items: str
    """JSON list of the encoded items' ``[key, kind, label]``, in item-row order."""


REDUCED_DIM = 64
"""Dimensions of the first-stage dense matrix (384 → 64: a sixth of the memory read per query; over
100,000 profiles with 3.5 items each, 96 dimensions cost 9.7 ms a query on one idle core, 64 5.3 ms)."""
TWO_STAGE_ROWS = 20_000
"""From this many rows on, the dense search runs in two stages (reduced matrix, then exact rescoring)."""
PROJECTION_SAMPLE = 16_384
"""Rows sampled to fit the projection."""
COMPACT_ROWS = 50_000
"""From this many documents on, item vectors are stored in int8 with a scale per row (once the projection exists)."""
ItemMeta = tuple[str, str, str]
"""What the index keeps of an item besides its vector: key, kind, label (for explanations)."""
Item = tuple[ItemMeta, np.ndarray]
"""An encoded item of a document: its key, kind and label, and its unit vector."""


def fit_projection(vectors: np.ndarray, dims: int = REDUCED_DIM, scales: np.ndarray | None = None) -> np.ndarray:
    """The top ``dims`` principal directions (uncentred) of the rows of ``vectors`` (times ``scales``)."""
    rows = vectors.shape[0]
    step = max(1, rows // PROJECTION_SAMPLE)
    sample = np.ascontiguousarray(vectors[::step][:PROJECTION_SAMPLE], dtype=np.float64)
    if scales is not None:
        sample *= scales[::step][:PROJECTION_SAMPLE, None]
    _, eigvecs = np.linalg.eigh(sample.T @ sample)
    return np.ascontiguousarray(eigvecs[:, ::-1][:, :dims], dtype=np.float32)


def project(
    vectors: np.ndarray, basis: np.ndarray, scales: np.ndarray | None = None, chunk: int = 16_384
) -> np.ndarray:
    """``(vectors × scales) @ basis`` in chunks (no large float temporaries)."""
    out = np.empty((vectors.shape[0], basis.shape[1]), dtype=np.float32)
    for start in range(0, vectors.shape[0], chunk):
        block = vectors[start : start + chunk].astype(np.float32, copy=False)
        if scales is not None:
            block = block * scales[start : start + chunk, None]
        np.dot(block, basis, out=out[start : start + chunk])
    return out


def quantise(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``block`` (float rows) as int8 rows and one float32 scale per row (``row ≈ int8 × scale``)."""
    block = np.asarray(block, dtype=np.float32)
    scale = np.abs(block).max(axis=1) / 127 if block.size else np.zeros(block.shape[0], dtype=np.float32)
    scale[scale == 0] = 1.0
    return np.rint(block / scale[:, None]).astype(np.int8), scale.astype(np.float32)


def group_aggregate(sims: np.ndarray, counts: np.ndarray, weights: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """One score per group of consecutive ``sims`` (``counts[i]`` of them; a group of 0 scores 0).

    ``weights``: of the best, second, third … item (one weight: the max; more: a weighted mean over
    the items a group has, normalised by the weights used)."""
    counts = np.asarray(counts, dtype=np.int64)
    out = np.zeros(counts.size, dtype=np.float32)
    present = counts > 0
    if not present.any():
        return out
    sizes = counts[present]
    starts = np.zeros(sizes.size, dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    if len(weights) == 1:
        out[present] = np.maximum.reduceat(sims, starts)
        return out
    group = np.repeat(np.arange(sizes.size), sizes)
    order = np.lexsort((-sims, group))
    ranked = sims[order]
    rank = np.arange(ranked.size) - np.repeat(starts, sizes)
    w = np.zeros(ranked.size, dtype=np.float64)
    inside = rank < len(weights)
    w[inside] = np.asarray(weights)[rank[inside]]
    out[present] = np.bincount(group, ranked * w, sizes.size) / np.bincount(group, w, sizes.size)
    return out


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenated ranges ``[starts[i], starts[i] + counts[i])``."""
    counts = counts.astype(np.int64, copy=False)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.zeros(counts.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    return np.repeat(starts.astype(np.int64, copy=False) - offsets, counts) + np.arange(total, dtype=np.int64)


_intern = sys.intern


def _interned(value: str | None) -> str | None:
    return None if value is None else _intern(value)


class Index:
    """Rows of documents with BM25, dense and filter columns."""

    def __init__(self, capacity: int = 1024, reduced_dim: int = REDUCED_DIM) -> None:
        self.capacity = capacity
        self.reduced_dim = reduced_dim
        self.size = 0
        self.item_capacity = capacity
        self.items = 0
        """Item rows used so far (live or dead): the end of the item layout."""
        self.item_vectors: np.ndarray = np.zeros((capacity, DIM), dtype=np.float32)
        """Item vectors, C-contiguous: ``item_vectors[:items]`` is a view, never copied by a query."""
        self.item_scale = np.ones(capacity, dtype=np.float32)
        """Each item row's scale once ``item_vectors`` is int8 (a row is ``item_vectors[i] × item_scale[i]``)."""
        self.item_reduced = np.zeros((capacity, reduced_dim), dtype=np.float32)
        """``item_vectors @ projection.basis`` (kept up to date by every write once a projection exists)."""
        self.item_dead = np.zeros(capacity, dtype=bool)
        """Item rows no document uses (left by a move or a shrink; compacted away at a build)."""
        self.item_owner = np.full(capacity, -1, dtype=np.int32)
        """The document row of each item row (-1: dead)."""
        self.dead_items = 0
        self.item_start = np.zeros(capacity, dtype=np.int64)
        """First item row of each document row."""
        self.item_count = np.zeros(capacity, dtype=np.int32)
        """Encoded items of each document row (its live item rows)."""
        self.item_alloc = np.zeros(capacity, dtype=np.int32)
        """Item rows reserved for each document row (≥ ``item_count``)."""
        self._segments: tuple[np.ndarray, np.ndarray] | None = None
        """(sorted item starts, their document rows) of the rows with reserved items (for a compaction)."""
        self._layout = 0
        """Bumped by every compaction (a build's reduced matrix from before it is recomputed)."""
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
        self.keys: list[str | None] = []
        """Each row's document key (None: removed)."""
        self.records: list[Stored | None] = []
        self.row_of: dict[str, int] = {}
        self.term_ids: dict[str, int] = {}
        self.terms: list[str] = []
        self.tokens: list[bytes] = []
        """Each row's BM25 terms as int32 term ids (``bytes``), boosted fields repeated."""
        self.delta: dict[int, int] = {}
        """row → version, of rows changed since the last BM25 build."""
        self._delta_cache: tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
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
        fills = {"kind": -1, "opp_type": -1, "org_kind": -1, "country": -1, "owner": -1, "expires": NO_EXPIRY}
        for name in (
            "alive",
            "active",
            "kind",
            "opp_type",
            "org_kind",
            "country",
            "owner",
            "sectors",
            "expires",
            "item_start",
            "item_count",
            "item_alloc",
        ):
            old = getattr(self, name)
            fill = fills.get(name, 0)
            # np.zeros leaves the pages beyond the rows in use untouched (not resident) until written.
            arr = np.zeros(new, dtype=old.dtype) if fill == 0 else np.full(new, fill, old.dtype)
            arr[: self.size] = old[: self.size]
            setattr(self, name, arr)
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
        dead = np.zeros(new, dtype=bool)
        dead[: self.items] = self.item_dead[: self.items]
        self.item_dead = dead
        owner = np.full(new, -1, dtype=np.int32)
        owner[: self.items] = self.item_owner[: self.items]
        self.item_owner = owner
        scale = np.ones(new, dtype=np.float32)
        scale[: self.items] = self.item_scale[: self.items]
        self.item_scale = scale
        self.item_capacity = new

    def _kill(self, start: int, end: int) -> None:
        """Item rows ``[start, end)`` become dead (zero vectors; their reduced rows too)."""
        if end <= start:
            return
        self.item_dead[start:end] = True
        self.item_owner[start:end] = -1
        self.item_vectors[start:end] = 0
        self.item_reduced[start:end] = 0
        self.dead_items += end - start
        self._written_items.update(range(start, end))

    def _set_items(self, row: int, items: list[Item]) -> None:
        """Replace the item rows of document ``row``: in place when they fit, else at the end."""
        n = len(items)
        start, count, alloc = int(self.item_start[row]), int(self.item_count[row]), int(self.item_alloc[row])
        if n > alloc:
            # The items outgrow their place: it is left dead (its unused tail was already) and they move to the end.
            self._kill(start, start + count)
            start = self.items
            self._grow_items(start + n)
            self.items += n
            self.item_start[row], self.item_alloc[row] = start, n
            self._segments = None
        else:
            self._kill(start + n, start + count)
            self.dead_items -= max(0, n - count)  # dead rows of its place used again
        if n:
            block = np.stack([np.asarray(vector, dtype=np.float32) for _, vector in items])
            if self.quantised:
                self.item_vectors[start : start + n], self.item_scale[start : start + n] = quantise(block)
            else:
                self.item_vectors[start : start + n] = block
            self.item_dead[start : start + n] = False
            self.item_owner[start : start + n] = row
            if self.projection is not None:
                self.item_reduced[start : start + n] = block @ self.projection.basis
            self._written_items.update(range(start, start + n))
        self.item_count[row] = n
        record = self.records[row] if row < len(self.records) else None
        if record is not None:
            record.items = json.dumps([list(meta) for meta, _ in items], ensure_ascii=False)

    def _release_items(self, row: int) -> None:
        """Free every item row of document ``row`` (a removal)."""
        start, count, alloc = int(self.item_start[row]), int(self.item_count[row]), int(self.item_alloc[row])
        self._kill(start, start + count)
        self.item_count[row] = 0
        self.item_alloc[row] = 0
        if alloc:
            self._segments = None

    def _sector_bits(self, sectors: Iterable[str]) -> int:
        bits = 0
        for s in sectors:
            # 64 bits: beyond 63 distinct sectors, codes share bits (a filter may then admit a near miss).
            bits |= 1 << (self._codes["sector"].code(s) % 64)
        return bits

    def _term_bytes(self, tokens: list[str]) -> bytes:
        ids = self.term_ids
        terms = self.terms
        out = []
        for t in tokens:
            tid = ids.get(t)
            if tid is None:
                tid = ids[t] = len(terms)
                terms.append(t)
            out.append(tid)
        return np.asarray(out, dtype=np.int32).tobytes()

    @staticmethod
    def _pack_fields(fields: dict[str, str]) -> bytes:
        raw = json.dumps(fields, ensure_ascii=False).encode()
        # A short text is kept as it is: compressing it cost a write ~30 µs (zlib sets up its
        # window for any input) and saved a few bytes. JSON starts with "{", a zlib stream never does.
        return raw if len(raw) < PACK_RAW_BELOW else zlib.compress(raw, 1)

    @staticmethod
    def _unpack_fields(packed: bytes) -> dict[str, str]:
        fields: dict[str, str] = json.loads(packed if packed[:1] == b"{" else zlib.decompress(packed))
        return fields

    def upsert(self, doc: Document, items: list[Item] | None = None) -> None:
        """Add or replace a document (it joins the BM25 delta until the next build).

        ``items`` are its encoded items; None: the document's own encoded items when it carries
        them (``doc.items`` / ``doc.item_vectors``), else its own vector as its one item."""
        row = self.row_of.get(doc.key)
        if row is None:
            row = self.size
            self._grow(row + 1)
            self.size += 1
            self.keys.append(doc.key)
            self.records.append(None)
            self.tokens.append(b"")
            self.row_of[doc.key] = row
        if items is None and doc.items and doc.item_vectors is not None:
            encoded, matrix = doc.encoded_items()
            items = [((i.key, i.kind, i.label), matrix[n]) for n, i in enumerate(encoded)]
        elif items is None:
            vector = np.asarray(doc.vector, dtype=np.float32) if doc.vector is not None else None
            items = [((doc.key, doc.kind, ""), vector)] if vector is not None and vector.any() else []
        tokens = doc.tokens()
        langs = doc.field_langs or {}
        self.records[row] = Stored(
            kind=_intern(doc.kind),
            entity_id=doc.entity_id,
            fields=self._pack_fields(doc.fields),
            langs=_intern(",".join(langs.get(name, "") for name in doc.fields)),
            lang=_interned(doc.lang),
            opportunity_type=_interned(doc.opportunity_type),
            org_kind=_interned(doc.org_kind),
            sectors=tuple(_intern(s) for s in doc.sectors),
            country=_interned(doc.country),
            owner_id=doc.owner_id,
            expires_on=doc.expires_on,
            active=doc.active,
            items="[]",
        )
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
        self.tokens[row] = self._term_bytes(tokens)
        self._version += 1
        self.delta[row] = self._version
        self._masks.clear()

    def unchanged(self, doc: Document) -> bool:
        """Whether the stored version of ``doc`` has the same texts and filter values (only its vectors
        may differ)."""
        row = self.row_of.get(doc.key)
        rec = self.records[row] if row is not None else None
        if rec is None:
            return False
        return (
            rec.fields == self._pack_fields(doc.fields)
            and (doc.lang is None or doc.lang == rec.lang)
            and (rec.kind, rec.opportunity_type, rec.org_kind, rec.sectors, rec.country, rec.owner_id)
            == (doc.kind, doc.opportunity_type, doc.org_kind, tuple(doc.sectors), doc.country, doc.owner_id)
            and (rec.expires_on, rec.active) == (doc.expires_on, doc.active)
        )

    def set_items(self, key: str, items: list[Item]) -> bool:
        """Replace a document's encoded items without touching its text (no BM25 change)."""
        row = self.row_of.get(key)
        if row is None:
            return False
        self._set_items(row, items)
        return True

    def patch_items(self, key: str, prefix: str, items: list[Item]) -> bool:
        """Replace only the encoded items of document ``key`` whose item key starts with ``prefix`` by
        ``items`` (the others keep their rows and vectors; no BM25 change). False: the document is not here.

        Rows move as the part needs: kept rows only when rows before them left, and a document that
        outgrows its place once, with room to grow (a profile gains its opportunities' items one at
        a time). The item keys are one JSON string per document, read and written whole when the part
        had encoded items or gets some; a part with none that gets none (a write whose text the encoder
        has not reached yet) is told by a search of that string, without reading it."""
        row = self.row_of.get(key)
        rec = self.records[row] if row is not None else None
        if row is None or rec is None:
            return False
        if not items and "[" + json.dumps(prefix, ensure_ascii=False)[:-1] not in rec.items:
            return True  # no item of the part is here (each meta is a list whose first element is its key)
        start, count, alloc = int(self.item_start[row]), int(self.item_count[row]), int(self.item_alloc[row])
        metas = json.loads(rec.items)[:count]
        keep = [n for n, m in enumerate(metas) if not str(m[0]).startswith(prefix)]
        if len(keep) == count and not items:
            return True
        kept, total = len(keep), len(keep) + len(items)
        arrays = ("item_vectors", "item_scale", "item_reduced")
        if total > alloc:
            # Moved to the end with room to grow; its old place is left dead.
            room = max(total, 2 * alloc, 4)
            place = self.items
            self._grow_items(place + room)
            self.items += room
            picked = start + np.asarray(keep, dtype=np.int64)
            for name in arrays:
                arr = getattr(self, name)
                arr[place : place + kept] = arr[picked]
            self.item_dead[place : place + kept] = False
            self.item_owner[place : place + kept] = row
            self._kill(start, start + count)
            self.item_dead[place + total : place + room] = True
            self.dead_items += room - total
            self.item_start[row], self.item_alloc[row] = place, room
            self._segments = None
            self._written_items.update(range(place, place + kept))
            start = place
        else:
            if kept != count:
                picked = start + np.asarray(keep, dtype=np.int64)
                for name in arrays:
                    arr = getattr(self, name)
                    arr[start : start + kept] = arr[picked]
                self._written_items.update(range(start, start + kept))
            self._kill(start + total, start + count)
            self.dead_items -= max(0, total - count)  # dead rows of its place used again
        if items:
            block = np.stack([np.asarray(vector, dtype=np.float32) for _, vector in items])
            at = slice(start + kept, start + total)
            if self.quantised:
                self.item_vectors[at], self.item_scale[at] = quantise(block)
            else:
                self.item_vectors[at] = block
            self.item_dead[at] = False
            self.item_owner[at] = row
            if self.projection is not None:
                self.item_reduced[at] = block @ self.projection.basis
            self._written_items.update(range(start + kept, start + total))
        self.item_count[row] = total
        rec.items = json.dumps([metas[n] for n in keep] + [list(meta) for meta, _ in items], ensure_ascii=False)
        return True

    def set_active(self, key: str, active: bool, expires_on: date | None = None) -> bool:
        """Change a document's status/expiry without touching its text (no BM25 change)."""
        row = self.row_of.get(key)
        rec = self.records[row] if row is not None else None
        if row is None or rec is None:
            return False
        rec.active = active
        self.active[row] = active
        if expires_on is not None:
            rec.expires_on = expires_on
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
        self._release_items(row)
        self.records[row] = None
        self.keys[row] = None
        self.tokens[row] = b""
        self.delta.pop(row, None)
        self._version += 1
        self._masks.clear()
        return True

    def document(self, row: int, *, with_vector: bool = False) -> Document:
        """The document of ``row`` as stored (its vector: the mean of its items, when asked for)."""
        rec = self.records[row]
        key = self.keys[row]
        assert rec is not None and key is not None
        fields = self._unpack_fields(rec.fields)
        doc = Document(
            key=key,
            kind=rec.kind,
            entity_id=rec.entity_id,
            fields=fields,
            vector=self.vector(row) if with_vector else None,  # type: ignore[arg-type]
            opportunity_type=rec.opportunity_type,
            org_kind=rec.org_kind,
            sectors=rec.sectors,
            country=rec.country,
            owner_id=rec.owner_id,
            expires_on=rec.expires_on,
            active=rec.active,
            lang=rec.lang,
        )
        doc.field_langs = {name: lang for name, lang in zip(fields, rec.langs.split(","), strict=False) if lang}
        return doc

    @property
    def quantised(self) -> bool:
        """Whether the item matrix is held in int8 (with a scale per row)."""
        return bool(self.item_vectors.dtype == np.int8)

    def _vectors(self, which: slice | np.ndarray) -> np.ndarray:
        """Item rows as float32 vectors."""
        block = self.item_vectors[which].astype(np.float32, copy=False)
        return block * self.item_scale[which, None] if self.quantised else block

    def _dots(self, which: slice | np.ndarray, q: np.ndarray) -> np.ndarray:
        """Cosines of item rows with the unit vector ``q`` (float32)."""
        sims = self.item_vectors[which].astype(np.float32, copy=False) @ q
        return sims * self.item_scale[which] if self.quantised else sims

    def vector(self, row: int) -> np.ndarray:
        """What document ``row`` searches with as a query: the unit mean of its items (zeros: none)."""
        start, count = int(self.item_start[row]), int(self.item_count[row])
        if count == 0:
            return np.zeros(DIM, dtype=np.float32)
        return centroid(self._vectors(slice(start, start + count)))

    def get(self, key: str) -> Document | None:
        """The document stored under ``key`` (with its vector)."""
        row = self.row_of.get(key)
        return self.document(row, with_vector=True) if row is not None else None

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
        marks = dict(self.delta)
        # The matrix itself, not a copy: item rows written during the build are re-projected at install.
        vectors = self.item_vectors[: self.items] if self._projection_due() else None
        self._written_items.clear()
        return Snapshot(
            self.size,
            list(self.tokens[: self.size]),
            self.terms,
            marks,
            vectors,
            self.items,
            self._layout,
            self.item_scale[: self.items] if vectors is not None and self.quantised else None,
            self.reduced_dim,
        )

    @staticmethod
    def build(snapshot: Snapshot) -> Built:
        """The BM25 postings over the snapshot's terms, and the dense projection when due.

        CPU-heavy; safe to run in a worker thread.
        """
        projection = reduced = None
        if snapshot.vectors is not None:
            basis = fit_projection(snapshot.vectors, snapshot.reduced_dim or REDUCED_DIM, snapshot.scales)
            projection = Projection(basis, snapshot.rows)
            reduced = project(snapshot.vectors, basis, snapshot.scales)
        terms = snapshot.terms
        tokens = [[terms[t] for t in np.frombuffer(b, dtype=np.int32).tolist()] for b in snapshot.tokens]
        main = build_main(snapshot.rows, tokens)
        del tokens
        return Built(main, snapshot.marks, snapshot.rows, projection, reduced, snapshot.items, snapshot.layout)

    def install(self, built: Built) -> None:
        """Swap in a build; rows changed again since the snapshot stay in the delta."""
        self.main = built.main
        self.stale = False
        for row, mark in built.marks.items():
            if self.delta.get(row) == mark:
                del self.delta[row]
        self._delta_cache = None
        if built.projection is not None and built.reduced is not None:
            self.projection = built.projection
            if built.layout != self._layout:
                # Item rows moved since the snapshot: project the current layout instead.
                scales = self.item_scale[: self.items] if self.quantised else None
                basis = built.projection.basis
                self.item_reduced[: self.items] = project(self.item_vectors[: self.items], basis, scales)
            else:
                self.item_reduced[: built.items] = built.reduced
                # Item rows written while the build ran: project them with the new basis.
                changed = sorted(self._written_items | set(range(built.items, self.items)))
                if changed:
                    rows = np.asarray(changed, dtype=np.int64)
                    self.item_reduced[rows] = self._vectors(rows) @ built.projection.basis
        if self.dead_items > max(1024, self.items // 8):
            self.compact()
        if self.projection is not None and self.size >= self.compact_rows and not self.quantised:
            # A large index: the exact vectors are read only for a shortlist; int8 with a scale per row is a
            # quarter of their memory (and converts to float32 faster than float16 does).
            small = np.zeros(self.item_vectors.shape, dtype=np.int8)
            for start in range(0, self.items, 65_536):
                end = min(self.items, start + 65_536)
                small[start:end], self.item_scale[start:end] = quantise(self.item_vectors[start:end])
            self.item_vectors = small

    def merge(self) -> None:
        """Rebuild the BM25 index (and the dense projection when due) now, synchronously."""
        self.install(self.build(self.snapshot()))

    def compact(self) -> None:
        """Drop the dead item rows: every document's items move down, in layout order."""
        rows, starts = self._segment_rows()
        counts = self.item_count[rows].astype(np.int64)
        keep = _ranges(starts, counts)
        new_starts = np.zeros(rows.size, dtype=np.int64)
        np.cumsum(counts[:-1], out=new_starts[1:])
        # keep[j] >= j: moving chunk by chunk in order never reads a row an earlier chunk overwrote.
        for arr in (self.item_vectors, self.item_reduced, self.item_scale, self.item_owner):
            for a in range(0, keep.size, 65_536):
                b = min(keep.size, a + 65_536)
                arr[a:b] = arr[keep[a:b]]
        end = int(keep.size)
        self.item_vectors[end : self.items] = 0
        self.item_reduced[end : self.items] = 0
        self.item_owner[end : self.items] = -1
        self.item_dead[: self.items] = False
        self.item_start[rows] = new_starts
        self.item_alloc[rows] = counts
        self.items = end
        self.dead_items = 0
        self._segments = None
        self._layout += 1
        self._written_items.clear()

    # -- reads ------------------------------------------------------------------------

    @property
    def documents(self) -> int:
        """Live documents."""
        return len(self.row_of)

    @property
    def live_items(self) -> int:
        """Encoded items of the live documents."""
        return int(self.item_count[: self.size].sum())

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

    def _delta_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The delta rows, their lengths, and all their term ids with the position of their row
        (worked out once per version of the delta)."""
        cached = self._delta_cache
        if cached is None or cached[0] != self._version:
            rows = np.fromiter(self.delta, dtype=np.int64, count=len(self.delta))
            arrays = [np.frombuffer(self.tokens[r], dtype=np.int32) for r in rows.tolist()]
            lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
            ids = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)
            owner = np.repeat(np.arange(rows.size), lengths)
            cached = self._delta_cache = (self._version, rows, lengths, ids, owner)
        return cached[1], cached[2], cached[3], cached[4]

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
            rows, lengths, ids, owner = self._delta_terms()
            norm = K1 * (1 - B + B * lengths / main.avgdl)
            delta = np.zeros(rows.size, dtype=np.float64)
            for term in terms:
                tid = self.term_ids.get(term)
                if tid is None:
                    continue
                tf = np.bincount(owner[ids == tid], minlength=rows.size).astype(np.float64)
                if not tf.any():
                    continue
                df = main.df.get(term, 0)
                idf = math.log(1 + (main.docs - df + 0.5) / (df + 0.5))
                delta += idf * tf / (tf + norm)
            scores[rows] = delta
        return scores

    def _segment_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(document rows, their item starts) of the rows with reserved items, in layout order."""
        if self._segments is None:
            rows = np.flatnonzero(self.item_alloc[: self.size] > 0)
            starts = self.item_start[rows]
            order = np.argsort(starts, kind="stable")
            self._segments = (rows[order], starts[order])
        return self._segments

    def _item_scores(self, q: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """``matrix[:items] @ q`` (float32; the item matrix with its scales; dead rows score anything)."""
        if matrix.dtype == np.float32:
            scores = matrix[: self.items] @ q
        else:
            scores = np.empty(self.items, dtype=np.float32)
            for start in range(0, self.items, 65_536):
                end = min(self.items, start + 65_536)
                scores[start:end] = self._dots(slice(start, end), q)
        return scores

    def _best_of_all(self, scores: np.ndarray) -> np.ndarray:
        """Every document row's best item score (0 without items) from the scores of every item row."""
        # One unbuffered scatter-max (numpy's fast path of ufunc.at: a fifth of reduceat's time over
        # 100,000 documents); dead item rows (owner -1) land on the extra last entry.
        out = np.full(self.size + 1, -np.inf, dtype=np.float32)
        np.maximum.at(out, self.item_owner[: self.items], scores)
        best = out[: self.size]
        best[np.isneginf(best)] = 0.0
        return best

    def dense(
        self, vector: np.ndarray, rows: np.ndarray | None = None, weights: tuple[float, ...] = (1.0,)
    ) -> np.ndarray:
        """Aggregated item cosine with ``vector`` of every document row, or of ``rows`` only (unit vectors):
        the best item's by default (see :func:`group_aggregate` for ``weights``)."""
        q = np.asarray(vector, dtype=np.float32)
        if rows is None:
            scores = self._item_scores(q, self.item_vectors)
            if len(weights) == 1:
                return self._best_of_all(scores)
            rows = np.arange(self.size)
            flat = _ranges(self.item_start[rows], self.item_count[rows])
            return group_aggregate(scores[flat], self.item_count[rows], weights)
        rows = np.asarray(rows, dtype=np.int64)
        counts = self.item_count[rows]
        flat = _ranges(self.item_start[rows], counts)
        return group_aggregate(self._dots(flat, q), counts, weights)

    def best_item(self, vector: np.ndarray, key: str) -> tuple[str, str, str, float] | None:
        """The item of document ``key`` closest to ``vector``: key, kind, label, cosine (None: none encoded)."""
        row = self.row_of.get(key)
        rec = self.records[row] if row is not None else None
        if row is None or rec is None or self.item_count[row] == 0:
            return None
        start, count = int(self.item_start[row]), int(self.item_count[row])
        scores = self._dots(slice(start, start + count), np.asarray(vector, dtype=np.float32))
        best = int(np.argmax(scores))
        metas = json.loads(rec.items)
        key_, kind, label = metas[best] if best < len(metas) else ("", "", "")
        return key_, kind, label, round(float(scores[best]), 6)

    def item_count_of(self, key: str) -> int:
        """Encoded items of document ``key`` in the index."""
        row = self.row_of.get(key)
        return 0 if row is None else int(self.item_count[row])

    def dense_approx(self, vector: np.ndarray) -> np.ndarray | None:
        """First-stage cosine estimate of every row (its best item's) from the reduced matrix.

        None when the index is below ``two_stage_rows`` or has no projection yet
        (then the exact cosines are computed).
        """
        if self.projection is None or self.size < self.two_stage_rows:
            return None
        q = np.asarray(vector, dtype=np.float32) @ self.projection.basis
        return self._best_of_all(self._item_scores(q, self.item_reduced))


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
