# Over 600 lines: the write path, the encoder worker and the follower share one protocol (items, queue,
# change log, leases); split apart, each would have to restate the others' invariants.
"""The search index follows the database, in every instance, without ever waiting for the encoder.

A write (an opportunity published or changed, a competence profile changed) records, in its own
transaction, the document's *items* (``index_item``: key, kind, language, fingerprint of the text),
queues the texts that have no vector yet (``encode_queue``) and appends the document's key to the
change log (``index_change``). After the commit the writing instance indexes the document at once:
BM25 finds it immediately, its dense side holds the items already encoded (none for a new text).

The *encoder worker* (one task per instance) claims the shortest queued texts for a lease (several
instances never encode the same text: a claimed row is skipped until its lease ends), encodes them
off the event loop, stores each vector under the hash of the model id and the text
(``text_vector``: the same text is never encoded twice, for any document, instance or restart),
and logs the documents that use them. The *follower* (one task per instance) reads the change log
from where it stopped and reloads those documents from the database, so every instance's index
holds what the database holds, whichever instance wrote it. A start-up reconciles the items of
every document with its current texts — a backfill of a whole register is the same queue.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge
from sqlalchemy import JSON, Integer, String, bindparam, delete, func, or_, text, type_coerce, update
from sqlalchemy import event as sa_event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import literal as sa_literal
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col, select

from distretto_shared.db import CoreUnitOfWork
from distretto_shared.logging import get_logger
from distretto_shared.outbox import OUTBOX_CTE_PG, take_pending_pg
from distretto_shared.waits import woken
from matchmaking.common import Ctx, after_commit
from matchmaking.matches.models import Match, MatchFeedback
from matchmaking.opportunities.domain import OpportunityStatus
from matchmaking.opportunities.models import Opportunity
from matchmaking.profiles.models import Organisation, Participation, Project
from matchmaking.search.document import (
    Document,
    Item,
    centroid,
    opportunity_fields,
    opportunity_items,
    opportunity_language,
    profile_items,
)
from matchmaking.search.embeddings import DIM, MODEL_ID, Encoder, text_hash
from matchmaking.search.engine import Engine
from matchmaking.search.index import Item as IndexItemVector
from matchmaking.search.index import ItemMeta
from matchmaking.search.store import EncodeQueue, IndexChange, IndexItem, TextVector, log_order
from matchmaking.tables import utcnow

log = get_logger(__name__)

INDEX_DOCUMENTS = Gauge("distretto_matchmaking_index_documents", "Documents in the ranking index", ["kind"])
ENCODE_BACKLOG = Gauge(
    "distretto_matchmaking_encode_backlog", "Texts waiting for their vector (the encoder queue, all instances)"
)
ITEMS_PENDING = Gauge(
    "distretto_matchmaking_index_items_pending",
    "Items of this instance's indexed documents not yet searchable by the dense side",
)
TEXTS_ENCODED = Counter("distretto_matchmaking_texts_encoded_total", "Texts encoded by this instance's worker")
INDEX_CHANGES = Counter("distretto_matchmaking_index_changes_total", "Change-log entries applied by this instance")

PROFILE = "profile"
OPPORTUNITY = "opportunity"
PROFILE_ITEM = "profile-item"
"""Change-log key ``profile-item:<opportunity id>``: only the items of that opportunity in its owner's
profile changed (the rest of the profile did not): a follower reloads those items, not the profile."""


def change_key(doc_key: str, prefix: str | None = None) -> str:
    """The change-log key of document ``doc_key``, or of only its items under ``prefix`` (an
    opportunity's items in its owner's profile have a key of their own; any other part: the document)."""
    if prefix and doc_key.startswith(f"{PROFILE}:") and prefix.startswith(f"{OPPORTUNITY}:") and prefix.endswith("#"):
        return f"{PROFILE_ITEM}:{prefix[len(OPPORTUNITY) + 1 : -1]}"
    return doc_key


# -- documents -----------------------------------------------------------------------------


def opportunity_document(o: Opportunity, vector: Any = None) -> Document:
    """An opportunity as an index document."""
    return Document(
        key=f"{OPPORTUNITY}:{o.id}",
        kind=OPPORTUNITY,
        entity_id=o.id,
        fields=opportunity_fields(o),
        lang=opportunity_language(o),
        vector=vector,
        opportunity_type=o.opportunity_type,
        sectors=tuple(o.sectors),
        country=o.country,
        owner_id=o.owner_organisation_id,
        expires_on=o.expires_on,
        active=o.status == OpportunityStatus.ACTIVE,
    )


def project_text(projects: list[Project]) -> str:
    """Titles, objectives, topics and keywords of an organisation's projects."""
    chunks = []
    for p in projects:
        chunk = f"{p.acronym}: {p.title}. {p.objective}"
        if p.topics:
            chunk += " Topics: " + ", ".join(p.topics) + "."
        if p.keywords:
            chunk += " Keywords: " + ", ".join(p.keywords) + "."
        chunks.append(chunk.strip())
    return "\n".join(chunks)


def profile_fields(org: Organisation, projects: list[Project]) -> dict[str, str]:
    """The texts of a competence profile the index searches, by field."""
    return {
        "description": org.description,
        "competences": "; ".join(org.competences),
        "keywords": "; ".join(org.keywords),
        "projects": project_text(projects),
    }


def profile_document(org: Organisation, projects: list[Project], vector: Any = None) -> Document:
    """A competence profile as an index document."""
    return Document(
        key=f"{PROFILE}:{org.organisation_id}",
        kind=PROFILE,
        entity_id=org.organisation_id,
        fields=profile_fields(org, projects),
        vector=vector,
        org_kind=org.kind,
        sectors=tuple(org.sectors),
        country=org.country,
        owner_id=org.organisation_id,
        active=org.status == "active",
    )


# -- items -----------------------------------------------------------------------------------------


def text_key(text_: str) -> str:
    """The fingerprint a vector is stored under: the model and the text."""
    return text_hash(text_, MODEL_ID)


def from_blob(blob: bytes | None) -> np.ndarray | None:
    """A stored vector, or None when absent or of the wrong size."""
    if not blob or len(blob) != DIM * 4:
        return None
    return np.frombuffer(blob, dtype=np.float32).copy()


def document_vector(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """What a document searches with as a query: the unit mean of its encoded items (zeros: none yet)."""
    if not vectors:
        return np.zeros(DIM, dtype=np.float32)
    return centroid(np.stack(vectors))


# -- writes: items, queue, change log ----------------------------------------------------------------

CHUNK = 500
"""Rows per statement in bulk writes and IN lists."""


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _insert(ctx: Ctx, model: Any) -> Any:
    return (sqlite.insert if ctx.db.sqlite else postgresql.insert)(model)


def _sqlite_upsert_items() -> Any:
    insert = sqlite.insert(IndexItem)
    columns = ("kind", "lang", "label", "text_hash")
    return insert.on_conflict_do_update(
        index_elements=["doc_key", "item_key"], set_={c: insert.excluded[c] for c in columns}
    )


_UPSERT_ITEMS = _sqlite_upsert_items()
"""SQLite: ``index_item`` rows written or overwritten. Built once and run with a list of rows (an
``executemany``), so its compiled form is cached (a multi-row VALUES built from the rows themselves
has no cache key: it was compiled again on every write)."""


_CHANGES = "matchmaking_index_changes"
"""``session.info`` key: the document keys the unit of work logs at its commit."""
_LOGGED = "matchmaking_index_logged"
"""``session.info`` key: the change-log entries (id, key) the unit of work appended (set at its commit)."""
_APPENDED = "matchmaking_index_appended"
"""``session.info`` key: the keys the unit of work has appended to the change log already."""
_WATCHED = "matchmaking_index_watched"
"""``session.info`` key: the ``IndexState`` of the writer that indexes the unit of work's documents
itself once it committed (its entries are marked in flight there until then)."""


async def log_changes(ctx: Ctx, session: AsyncSession, keys: Iterable[str]) -> None:
    """Append ``keys`` to the change log when the unit of work commits (on PostgreSQL, the writes of
    :func:`record_items` append theirs with the items, in the same statement).

    The entries' commit order is the database's to record (:func:`~matchmaking.search.store.log_order`):
    on PostgreSQL each gets its ``seq`` at the commit, from a deferred trigger that takes a
    transaction lock for the commit only (migration 0004), so writers never hold a lock across a
    round trip to the client; SQLite has one writer at a time, its ids are in commit order.
    """
    keys = set(keys)
    if not keys:
        return
    pending: set[str] | None = session.info.get(_CHANGES)
    if pending is None:
        pending = session.info[_CHANGES] = set()
    pending.update(keys)


def _appended(info: dict[str, Any], logged: list[tuple[int, str]]) -> None:
    """Record change-log entries the unit of work (its ``info``) appended: read by the writer's
    after-commit hook (what it indexed itself, its follower need not load again), marked in flight
    for the follower."""
    info.setdefault(_LOGGED, []).extend(logged)
    info.setdefault(_APPENDED, set()).update(key for _, key in logged)
    state: IndexState | None = info.get(_WATCHED)
    if state is not None:
        # In flight until the writer's hook: a follower reading one meanwhile marks it (and loads it).
        for change_id, _ in logged:
            state.inflight[change_id] = False


@sa_event.listens_for(Session, "before_commit")
def _write_changes(session: Session) -> None:
    """Append the unit of work's change-log entries not appended yet, just before it commits."""
    keys = session.info.pop(_CHANGES, set()) - session.info.get(_APPENDED, set())
    if not keys:
        return
    session.flush()
    conn = session.connection()
    now = utcnow()
    logged: list[tuple[int, str]] = []
    if conn.dialect.name == "postgresql":
        result = conn.execute(_APPEND_PG, {"keys": sorted(keys), "now": now})
        logged = [(int(i), str(k)) for i, k in result.all()]
    else:
        for chunk in _chunks(sorted(keys)):
            result = conn.execute(_APPEND_SQLITE, [{"doc_key": k, "created_at": now} for k in chunk])
            logged += [(int(i), str(k)) for i, k in result.all()]
    _appended(session.info, logged)


_APPEND_SQLITE = IndexChange.__table__.insert().returning(  # type: ignore[attr-defined]
    IndexChange.__table__.c.id,  # type: ignore[attr-defined]
    IndexChange.__table__.c.doc_key,  # type: ignore[attr-defined]
)
"""SQLite: change-log entries appended (a list of rows), their ids returned (built once)."""


async def _append_now(conn: Any, info: dict[str, Any], keys: Iterable[str]) -> None:
    """SQLite, in a Core unit of work: append ``keys`` to the change log now, not at the commit
    (one writer at a time: the ids are in commit order wherever in the transaction they are taken)."""
    keys = set(keys) - info.get(_APPENDED, set())
    if not keys:
        return
    now = utcnow()
    logged: list[tuple[int, str]] = []
    for chunk in _chunks(sorted(keys)):
        result = await conn.execute(_APPEND_SQLITE, [{"doc_key": k, "created_at": now} for k in chunk])
        logged += [(int(i), str(k)) for i, k in result.all()]
    _appended(info, logged)


_APPEND_PG = text(
    "INSERT INTO index_change (doc_key, created_at) "
    "SELECT k, CAST(:now AS timestamptz) FROM unnest(CAST(:keys AS text[])) AS k RETURNING id, doc_key"
)


@sa_event.listens_for(Session, "after_rollback")
def _drop_changes(session: Session) -> None:
    """A rolled-back unit of work logs nothing."""
    forget_changes(session.info)


def forget_changes(info: dict[str, Any]) -> None:
    """What a rolled-back unit of work (its ``info``) logged is forgotten (a Core unit of work's
    writer calls it; a session's rollback does through its listener)."""
    info.pop(_CHANGES, None)
    info.pop(_APPENDED, None)
    logged = info.pop(_LOGGED, None)
    state: IndexState | None = info.pop(_WATCHED, None)
    if state is not None and logged:
        for change_id, _ in logged:
            state.inflight.pop(change_id, None)


_KNOWN_VECTORS = sa_select(col(TextVector.text_hash), col(TextVector.vector)).where(
    col(TextVector.text_hash).in_(bindparam("hashes", expanding=True))
)
"""The stored vectors of some texts (``hashes``: their fingerprints)."""

_QUEUE_TEXT = sqlite.insert(EncodeQueue).on_conflict_do_nothing()
"""SQLite: a text queued unless it is already (built once, run with a list of rows: its compiled form is cached)."""


def _queue_one() -> Any:
    queue, vectors = EncodeQueue.__table__, TextVector.__table__  # type: ignore[attr-defined]
    h = bindparam("h", type_=String)
    row = sa_select(
        h, bindparam("t", type_=String), bindparam("n", type_=Integer), bindparam("now", type_=queue.c.created_at.type)
    ).where(~sa_select(sa_literal(1)).where(vectors.c.text_hash == h).exists())
    insert = sqlite.insert(queue).from_select(["text_hash", "text", "length", "created_at"], row)
    return insert.on_conflict_do_nothing().returning(queue.c.text_hash)


_QUEUE_ONE = _queue_one()
"""SQLite: one text (``h``, ``t``, ``n``: its fingerprint, text, length) queued unless it has a vector
or is queued already; returns its fingerprint when it queued it (built once)."""


async def enqueue_texts(conn: Any, texts: dict[str, str]) -> dict[str, bytes]:
    """SQLite: queue the texts (by fingerprint) that have no vector yet; returns the stored vectors
    of the others (PostgreSQL: :func:`_write_items_pg`).

    Its statements go to the unit of work's connection (``conn``), past the ORM (nothing of theirs
    is an ORM instance; the callers have flushed)."""
    hashes = sorted(texts)
    known: dict[str, bytes] = {}
    if len(hashes) == 1:
        # One text (a write of one document, a new text): queued by one statement, which tells
        # whether it was; only a text it did not queue (it has a vector, or is queued) is looked up.
        h = hashes[0]
        params = {"h": h, "t": texts[h], "n": len(texts[h]), "now": utcnow()}
        if (await conn.execute(_QUEUE_ONE, params)).first() is not None:
            return known
        return {k: v for k, v in (await conn.execute(_KNOWN_VECTORS, {"hashes": hashes})).all()}
    for chunk in _chunks(hashes):
        known |= {h: v for h, v in (await conn.execute(_KNOWN_VECTORS, {"hashes": list(chunk)})).all()}
    missing = [h for h in hashes if h not in known]
    now = utcnow()
    for chunk in _chunks(missing):
        rows = [{"text_hash": h, "text": texts[h], "length": len(texts[h]), "created_at": now} for h in chunk]
        await conn.execute(_QUEUE_TEXT, rows)
    return known


_WRITE_ITEMS = text(
    "WITH written AS (INSERT INTO index_item (doc_key, item_key, kind, lang, label, text_hash) "
    "SELECT * FROM unnest(CAST(:docs AS text[]), CAST(:items AS text[]), CAST(:kinds AS text[]), "
    "CAST(:langs AS text[]), CAST(:labels AS text[]), CAST(:item_hashes AS text[])) "
    "ON CONFLICT (doc_key, item_key) DO UPDATE SET kind = EXCLUDED.kind, lang = EXCLUDED.lang, "
    "label = EXCLUDED.label, text_hash = EXCLUDED.text_hash), "
    "known AS (SELECT text_hash, vector FROM text_vector WHERE text_hash = ANY(CAST(:hashes AS text[]))), "
    "queued AS (INSERT INTO encode_queue (text_hash, text, length, created_at) "
    "SELECT h, t, n, CAST(:now AS timestamptz) "
    "FROM unnest(CAST(:hashes AS text[]), CAST(:texts AS text[]), CAST(:lengths AS integer[])) AS v(h, t, n) "
    "WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.text_hash = v.h) ON CONFLICT DO NOTHING), "
    "logged AS (INSERT INTO index_change (doc_key, created_at) "
    "SELECT k, CAST(:now AS timestamptz) FROM unnest(CAST(:logged AS text[])) AS k RETURNING id, doc_key) "
    "SELECT text_hash, vector, CAST(NULL AS integer) FROM known UNION ALL SELECT doc_key, NULL, id FROM logged"
)
"""PostgreSQL: ``index_item`` rows written or overwritten, their new texts queued unless they have
a vector (whose stored vectors it returns), and the documents' change-log entries appended (whose
ids it returns), in one round trip (the writes touch different tables; ``known`` is read before
any writes; the entries' commit order is given at the commit, see :func:`log_changes`)."""


@dataclass(frozen=True)
class Along:
    """A write of the unit of work's own row (``statement``: an ``INSERT`` or ``UPDATE`` as text, its
    parameters typed by its bind parameters; ``params``) that the index write runs with its own: on
    PostgreSQL as a data-modifying ``WITH`` of the items statement (one round trip for both, the
    outbox rows added so far included), on SQLite just before it."""

    statement: Any
    params: dict[str, Any]


@functools.lru_cache(maxsize=8)
def _write_items_along(statement: Any, outbox: bool) -> Any:
    """:data:`_WRITE_ITEMS` that also runs ``statement`` (a data-modifying ``WITH`` named ``along``;
    its bind parameters keep their types) and, with ``outbox``, writes the unit of work's pending
    outbox rows (:data:`~distretto_shared.outbox.OUTBOX_CTE_PG`). Built once per shape."""
    ctes = f"WITH along AS ({statement.text}), " + (f"{OUTBOX_CTE_PG}, " if outbox else "")
    combined = text(ctes + _WRITE_ITEMS.text[len("WITH ") :])
    return combined.bindparams(*statement._bindparams.values())


async def _write_items_pg(
    conn: Any, rows: list[dict[str, Any]], texts: dict[str, str], changes: list[str], along: Along | None = None
) -> tuple[dict[str, bytes], list[tuple[int, str]]]:
    """Write ``rows`` to ``index_item``, queue the ``texts`` without a vector (by fingerprint) and
    append ``changes`` to the change log; returns the stored vectors of the others and the entries
    appended (id, key). ``CHUNK`` rows, texts and changes per statement; ``along`` with the first,
    and with it the outbox rows a Core unit of work (``conn``) added so far."""
    hashes = sorted(texts)
    known: dict[str, bytes] = {}
    logged: list[tuple[int, str]] = []
    now = utcnow()
    for start in range(0, max(len(rows), len(hashes), len(changes), 1 if along else 0), CHUNK):
        part, chunk = rows[start : start + CHUNK], hashes[start : start + CHUNK]
        params = {
            "logged": changes[start : start + CHUNK],
            "docs": [r["doc_key"] for r in part],
            "items": [r["item_key"] for r in part],
            "kinds": [r["kind"] for r in part],
            "langs": [r["lang"] for r in part],
            "labels": [r["label"] for r in part],
            "item_hashes": [r["text_hash"] for r in part],
            "hashes": chunk,
            "texts": [texts[h] for h in chunk],
            "lengths": [len(texts[h]) for h in chunk],
            "now": now,
        }
        statement = _WRITE_ITEMS
        if along is not None and start == 0:
            outbox = take_pending_pg(conn) if isinstance(conn, CoreUnitOfWork) else None
            statement = _write_items_along(along.statement, outbox is not None)
            params = {**along.params, **(outbox or {}), **params}
        for key, vector, change_id in (await conn.execute(statement, params)).all():
            if change_id is None:
                known[key] = bytes(vector)
            else:
                logged.append((int(change_id), str(key)))
    return known, logged


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern (escape character ``/``) matching the strings that start with ``prefix``."""
    return prefix.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


@functools.lru_cache(maxsize=64)
def _current_items(whole: bool, narrowed: int) -> Any:
    """The recorded items of some documents whole (parameter ``whole``: their keys) and of
    ``narrowed`` others under a prefix (``doc<n>``, ``prefix<n>``: a LIKE pattern). Built once per
    shape: building a statement cost a write more than running it."""
    where: list[Any] = [col(IndexItem.doc_key).in_(bindparam("whole", expanding=True))] if whole else []
    where += [
        (col(IndexItem.doc_key) == bindparam(f"doc{n}", type_=String))
        & col(IndexItem.item_key).like(bindparam(f"prefix{n}", type_=String), escape="/")
        for n in range(narrowed)
    ]
    return sa_select(
        col(IndexItem.doc_key),
        col(IndexItem.item_key),
        col(IndexItem.kind),
        col(IndexItem.lang),
        col(IndexItem.label),
        col(IndexItem.text_hash),
    ).where(or_(*where))


_DELETE_ITEMS = delete(IndexItem).where(
    col(IndexItem.doc_key) == bindparam("doc", type_=String),
    col(IndexItem.item_key).in_(bindparam("stale", expanding=True)),
)
"""Some items of one document (``doc``, ``stale``: their item keys) dropped."""


RecordedRow = tuple[str, str, str, str | None, str, str]
"""An ``index_item`` row as read: document key, item key, kind, language, label, text fingerprint."""


def opportunity_recorded(sqlite: bool) -> Any:
    """A correlated scalar subquery of a statement over ``opportunity``: the recorded items of the
    opportunity's document and of its part of its owner's profile, as one JSON array of
    :data:`RecordedRow` (a writer that reads the row anyway needs no statement of its own for them)."""
    table: Any = Opportunity.__table__  # type: ignore[attr-defined]
    items: Any = IndexItem.__table__  # type: ignore[attr-defined]
    doc = sa_literal(f"{OPPORTUNITY}:") + table.c.id
    part = doc + "#"
    columns = (items.c.doc_key, items.c.item_key, items.c.kind, items.c.lang, items.c.label, items.c.text_hash)
    rows = (
        func.json_group_array(func.json_array(*columns)) if sqlite else func.json_agg(func.json_build_array(*columns))
    )
    owned = items.c.doc_key == sa_literal(f"{PROFILE}:") + table.c.owner_organisation_id
    # substr, not LIKE: nothing in an id is a wildcard to escape.
    where = or_(items.c.doc_key == doc, owned & (func.substr(items.c.item_key, 1, func.length(part)) == part))
    return sa_select(type_coerce(rows, JSON)).where(where).scalar_subquery()


async def record_items(
    ctx: Ctx,
    session: AsyncSession | CoreUnitOfWork,
    items: dict[str, list[Item]],
    parts: dict[str, str] | None = None,
    *,
    new: Iterable[str] = (),
    recorded: Sequence[Sequence[Any]] | None = None,
    along: Along | None = None,
) -> Recorded:
    """Make ``index_item`` hold exactly ``items`` for each of these documents (an empty list: none),
    queue the texts without a vector and log the documents as changed.

    ``parts`` (doc key → item-key prefix) narrows a document to the items under that prefix: the
    others are left as they are (an opportunity of a profile changed, not the whole profile). Only
    rows that differ are written, and only their texts looked up in the vector store.

    Returns the recorded items with their vectors (as :func:`load_vectors` would) of the whole
    documents whose every item was written here (a new document, a changed text): the writer need
    not read them back.

    ``new``: documents (or their parts) known to have no recorded item yet (an opportunity just
    created): not looked up.

    ``session``: an ORM unit of work (on SQLite its change-log entries are appended at its commit)
    or a Core one (appended here).

    ``recorded``: the rows these documents (their parts) hold now, as the caller read them in this
    unit of work with its row lock (:func:`opportunity_recorded`): not read again. Only for documents
    that fit in one statement (``CHUNK``).

    ``along``: the write of the unit of work's own row, run with the items' (a Core unit of work's
    round trip saved on PostgreSQL); on SQLite first, before anything is read.
    """
    parts = parts or {}
    if recorded is not None and len(items) > CHUNK:
        raise ValueError("recorded rows are given for one chunk of documents at most")
    new = set(new)
    # Core statements on the unit of work's connection (no ORM instance involved; the callers flushed).
    conn: Any = session if isinstance(session, CoreUnitOfWork) else await session.connection()
    if along is not None and ctx.db.sqlite:
        await conn.execute(along.statement, along.params)
        along = None
    keys = sorted(items)
    fresh: dict[str, str] = {}
    rewritten: set[str] = set()
    upserts: list[dict[str, Any]] = []
    for chunk in _chunks(keys):
        whole = [k for k in chunk if k not in parts and k not in new]
        narrowed = [k for k in chunk if k in parts and k not in new]
        current: dict[tuple[str, str], tuple[str, str | None, str, str]] = {}
        if recorded is not None:
            # Read by the caller: only the rows of these documents (a profile's under its part) count.
            for d, i, kind, lang, label, h in recorded:
                if d in whole or (d in narrowed and i.startswith(parts[d])):
                    current[(d, i)] = (kind, lang, label, h)
        elif whole or narrowed:
            params: dict[str, Any] = {"whole": whole} if whole else {}
            for n, k in enumerate(narrowed):
                params[f"doc{n}"], params[f"prefix{n}"] = k, _like_prefix(parts[k])
            found = (await conn.execute(_current_items(bool(whole), len(narrowed)), params)).all()
            current = {(d, i): (kind, lang, label, h) for d, i, kind, lang, label, h in found}
        wanted = {(k, i.key): i for k in chunk for i in items[k]}
        gone = [pair for pair in current if pair not in wanted]
        for doc_key in sorted({d for d, _ in gone}):
            stale = [item for d, item in gone if d == doc_key]
            await conn.execute(_DELETE_ITEMS, {"doc": doc_key, "stale": stale})
        rows = []
        kept: set[str] = set()
        for (d, _), i in wanted.items():
            row = (i.kind, i.lang, i.label[:300], text_key(i.text))
            if current.get((d, i.key)) == row:
                kept.add(d)
                continue
            kind, lang, label, hash_ = row
            rows.append(
                {"doc_key": d, "item_key": i.key, "kind": kind, "lang": lang, "label": label, "text_hash": hash_}
            )
            fresh[hash_] = i.text
        if ctx.db.sqlite:
            for part in _chunks(rows):
                await conn.execute(_UPSERT_ITEMS, list(part))
        else:
            upserts += rows
        rewritten |= {k for k in chunk if k not in parts and k not in kept}
    # The texts of unchanged rows were queued (or had their vector) when those rows were written.
    changes = [change_key(k, parts.get(k)) for k in keys]
    if ctx.db.sqlite:
        stored = await enqueue_texts(conn, fresh) if fresh else {}
        if isinstance(session, CoreUnitOfWork):
            await _append_now(conn, session.info, changes)
        else:
            await log_changes(ctx, session, changes)
    else:
        # The change-log entries go with the items (the log's order is the commit's, not the append's).
        appended: set[str] = session.info.get(_APPENDED, set())
        stored, logged = await _write_items_pg(conn, upserts, fresh, sorted(set(changes) - appended), along)
        _appended(session.info, logged)
    out: Recorded = {}
    for key in sorted(rewritten):
        written = sorted(items[key], key=lambda i: i.key)
        if written:
            out[key] = [((i.key, i.kind, i.label[:300]), from_blob(stored.get(text_key(i.text)))) for i in written]
    return out


# -- reads: documents with their encoded items --------------------------------------------------------

Waiting = dict[str, int]
"""Of one document: items still waiting for their vector, by part (an opportunity's items in its owner's
profile: ``opportunity:<id>#``; every other item: ``""``)."""

Loaded = tuple[Document, list[IndexItemVector], Waiting]
"""A document, its encoded items, and how many of its items are still waiting for their vector."""


def waiting_of(recorded: Iterable[tuple[ItemMeta, np.ndarray | None]]) -> Waiting:
    """The items of ``recorded`` without a vector, counted by part."""
    out: Waiting = {}
    for meta, vector in recorded:
        if vector is None:
            part = _part_of(meta[0]) or ""
            out[part] = out.get(part, 0) + 1
    return out


@dataclass
class Sources:
    """The rows documents are made of (for some documents, or all)."""

    opportunities: dict[str, Opportunity]
    organisations: dict[str, Organisation]
    projects: dict[str, list[Project]]
    published: dict[str, list[Opportunity]]
    """organisation id → the active opportunities it published (items of its profile)."""

    def items(self) -> dict[str, list[Item]]:
        """The items of every document these rows make (an organisation that is not active: none)."""
        out: dict[str, list[Item]] = {}
        for oid, o in self.opportunities.items():
            out[f"{OPPORTUNITY}:{oid}"] = opportunity_items(o)
        for oid, org in self.organisations.items():
            if org.status == "active":
                out[f"{PROFILE}:{oid}"] = profile_items(org, self.projects.get(oid, []), self.published.get(oid, []))
            else:
                out[f"{PROFILE}:{oid}"] = []
        return out


def _in_session(session: AsyncSession, model: Any, ids: Sequence[str]) -> dict[str, Any]:
    """The rows of ``model`` with these primary keys that ``session`` holds, loaded and not expired."""
    mapper = sa_inspect(model)
    held = session.sync_session.identity_map
    out: dict[str, Any] = {}
    for i in ids:
        obj = held.get(mapper.identity_key_from_primary_key((i,)))
        if obj is not None:
            state = sa_inspect(obj)
            if state.persistent and not state.expired_attributes:
                out[i] = obj
    return out


def with_owners(keys: Sequence[str], owners: dict[str, str]) -> list[str]:
    """``keys`` plus the profiles of the owners of the opportunities among them (an opportunity is an
    item of its owner's profile)."""
    out = list(dict.fromkeys(keys))
    for key in keys:
        owner = owners.get(key)
        if owner is not None:
            out.append(f"{PROFILE}:{owner}")
    return list(dict.fromkeys(out))


async def load_sources(session: AsyncSession, keys: Sequence[str] | None, *, with_items: bool = True) -> Sources:
    """The source rows of the documents ``keys`` (None: of every document); ``with_items=False``
    leaves out the profiles' published opportunities (only their items need them)."""
    opp_ids = org_ids = None
    if keys is not None:
        opp_ids = sorted({k.split(":", 1)[1] for k in keys if k.startswith(f"{OPPORTUNITY}:")})
        org_ids = sorted({k.split(":", 1)[1] for k in keys if k.startswith(f"{PROFILE}:")})
    opportunities: dict[str, Opportunity] = {}
    organisations: dict[str, Organisation] = {}
    if opp_ids is None:
        q = select(Opportunity).order_by(Opportunity.id)
        opportunities = {o.id: o for o in (await session.execute(q)).scalars()}
    else:
        # A writer's own rows are in its session already (flushed, nothing expired): not read again.
        opportunities = _in_session(session, Opportunity, opp_ids)
        missing = [i for i in opp_ids if i not in opportunities]
        for chunk in _chunks(missing):
            q = select(Opportunity).where(col(Opportunity.id).in_(chunk))
            opportunities |= {o.id: o for o in (await session.execute(q)).scalars()}
    if org_ids is None:
        q2 = select(Organisation).order_by(Organisation.organisation_id)
        organisations = {o.organisation_id: o for o in (await session.execute(q2)).scalars()}
    else:
        for chunk in _chunks(org_ids):
            q2 = select(Organisation).where(col(Organisation.organisation_id).in_(chunk))
            organisations |= {o.organisation_id: o for o in (await session.execute(q2)).scalars()}
    projects: dict[str, list[Project]] = {}
    wanted = sorted(organisations)
    # Built only when used: a writer's opportunity alone (no profile) needs neither statement.
    pairs = (
        select(Participation.organisation_id, Project).join(
            Project, col(Project.project_id) == col(Participation.project_id)
        )
        if org_ids is None or wanted
        else None
    )
    if pairs is None:
        rows = []
    elif org_ids is None:
        rows = list((await session.execute(pairs)).all())
    else:
        rows = []
        for chunk in _chunks(wanted):
            rows += (await session.execute(pairs.where(col(Participation.organisation_id).in_(chunk)))).all()
    for org_id, project in rows:
        projects.setdefault(org_id, []).append(project)
    for listed in projects.values():
        listed.sort(key=lambda p: p.project_id)
    published: dict[str, list[Opportunity]] = {}
    if not with_items:
        owned = []
    elif org_ids is None:
        owned = [o for o in opportunities.values() if o.status == OpportunityStatus.ACTIVE.value]
    else:
        owned = []
        for chunk in _chunks(wanted):
            q3 = (
                select(Opportunity)
                .where(Opportunity.status == OpportunityStatus.ACTIVE.value)
                .where(col(Opportunity.owner_organisation_id).in_(chunk))
            )
            owned += (await session.execute(q3)).scalars()
    for o in owned:
        published.setdefault(o.owner_organisation_id, []).append(o)
    return Sources(opportunities, organisations, projects, published)


Recorded = dict[str, list[tuple[ItemMeta, np.ndarray | None]]]
"""doc key → its recorded items in key order (key, kind, label), each with its vector (None: not encoded yet)."""


async def load_vectors(session: AsyncSession | CoreUnitOfWork, keys: Sequence[str] | None) -> Recorded:
    """The recorded items of the documents ``keys`` (None: of every document) with their vectors."""
    q = (
        sa_select(
            col(IndexItem.doc_key),
            col(IndexItem.item_key),
            col(IndexItem.kind),
            col(IndexItem.label),
            col(TextVector.vector),
        )
        .outerjoin(TextVector, col(TextVector.text_hash) == col(IndexItem.text_hash))
        .order_by(IndexItem.doc_key, IndexItem.item_key)
    )
    rows: list[Any] = []
    if keys is None:
        rows = list((await session.execute(q)).all())
    else:
        for chunk in _chunks(sorted(set(keys))):
            rows += (await session.execute(q.where(col(IndexItem.doc_key).in_(chunk)))).all()
    out: Recorded = {}
    for doc_key, item_key, kind, label, blob in rows:
        out.setdefault(doc_key, []).append(((item_key, kind, label), from_blob(blob)))
    return out


def make_documents(sources: Sources, vectors: Recorded) -> dict[str, Loaded | None]:
    """The index documents of ``sources`` (None for a profile that must leave the index)."""
    out: dict[str, Loaded | None] = {}

    def loaded(doc: Document) -> Loaded:
        recorded = vectors.get(doc.key, [])
        encoded = [(k, v) for k, v in recorded if v is not None]
        doc.vector = document_vector([v for _, v in encoded])
        return doc, encoded, waiting_of(recorded)

    for o in sources.opportunities.values():
        out[f"{OPPORTUNITY}:{o.id}"] = loaded(opportunity_document(o))
    for org in sources.organisations.values():
        key = f"{PROFILE}:{org.organisation_id}"
        if org.status != "active":
            out[key] = None
        else:
            out[key] = loaded(profile_document(org, sources.projects.get(org.organisation_id, [])))
    return out


async def load_documents(session: AsyncSession, keys: Sequence[str]) -> dict[str, Loaded | None]:
    """The index documents ``keys`` as the database holds them now (None: not in the index)."""
    found = make_documents(await load_sources(session, keys, with_items=False), await load_vectors(session, keys))
    return {k: found.get(k) for k in keys}


Vote = tuple[str, str, int, dict[str, Any]]
"""A feedback vote: query key, counterpart key, ±1, the voted match's score parts."""


async def load_feedback(session: AsyncSession) -> list[Vote]:
    """Every feedback vote."""
    q = select(MatchFeedback, Match).join(Match, col(Match.id) == col(MatchFeedback.match_id))
    rows = (await session.execute(q)).all()
    return [(query_key(m), counterpart_key(m), 1 if fb.useful else -1, m.score_parts or {}) for fb, m in rows]


def replace_feedback(engine: Engine, votes: list[Vote]) -> None:
    """Make the engine's feedback exactly ``votes`` (the database's)."""
    engine.feedback.clear()
    for query, counterpart, vote, parts in votes:
        engine.feedback.add(query, counterpart, vote, engine.lean_of(parts))


# -- this instance's index -------------------------------------------------------------------------

FEEDBACK_KEY = "feedback"
"""The change-log key that tells every instance to reload the feedback votes."""


class IndexState:
    """This instance's position in the change log, what its index still waits for, and the wake-ups."""

    def __init__(self) -> None:
        self.cursor = 0
        self.pending: dict[str, Waiting] = {}
        """doc key → items recorded but not yet encoded (as indexed here), by part."""
        self.applied: dict[int, str] = {}
        """Change-log id → key of entries this instance's writers indexed themselves (the follower skips them)."""
        self.inflight: dict[int, bool] = {}
        """Change-log id → read by the follower yet, of entries whose writer (of this instance) has not
        run its after-commit hook yet (the hook does not index what the follower loaded already)."""
        self.changed = asyncio.Event()
        """Set after a local commit logged changes, and after the worker stored vectors."""
        self.queued = asyncio.Event()
        """Set after a local commit queued texts."""
        self.worker_id = uuid.uuid4().hex[:16]
        self.on_stop: list[Callable[[], None]] = []
        """What to undo when the service stops (its scrape hook)."""

    @property
    def items_pending(self) -> int:
        """Items of indexed documents not yet searchable by the dense side."""
        return sum(sum(parts.values()) for parts in self.pending.values())


def apply(ctx: Ctx, found: dict[str, Loaded | None]) -> None:
    """Put loaded documents into this instance's index (None: remove)."""
    engine, state = ctx.get(Engine), ctx.get(IndexState)
    for key, entry in found.items():
        if entry is None:
            engine.remove(key)
            state.pending.pop(key, None)
        else:
            doc, items, waiting = entry
            if engine.index.unchanged(doc):
                # Only vectors arrived (the worker encoded items): no new BM25 terms to work out.
                engine.index.set_items(key, items)
            else:
                engine.upsert(doc, items)
            if waiting:
                state.pending[key] = waiting
            else:
                state.pending.pop(key, None)


def patch(ctx: Ctx, doc_key: str, parts: dict[str, list[tuple[ItemMeta, np.ndarray | None]]]) -> bool:
    """Replace only these parts of a profile in this instance's index (False: it is not indexed here)."""
    engine, state = ctx.get(Engine), ctx.get(IndexState)
    if doc_key not in engine.index.row_of:
        return False
    waiting = dict(state.pending.get(doc_key, {}))
    for prefix, recorded in parts.items():
        encoded: list[IndexItemVector] = [(meta, v) for meta, v in recorded if v is not None]
        engine.index.patch_items(doc_key, prefix, encoded)
        count = sum(1 for _, v in recorded if v is None)
        if count:
            waiting[prefix] = count
        else:
            waiting.pop(prefix, None)
    if waiting:
        state.pending[doc_key] = waiting
    else:
        state.pending.pop(doc_key, None)
    return True


Parts = dict[str, dict[str, list[tuple[ItemMeta, np.ndarray | None]]]]
"""profile key → opportunity item-key prefix → its recorded items with their vectors (None: not encoded yet)."""


async def load_profile_parts(session: AsyncSession, opportunity_ids: Sequence[str]) -> Parts:
    """The items of these opportunities in their owners' profiles: one statement, whatever the number
    of items the profiles hold."""
    ids = sorted(set(opportunity_ids))
    if not ids:
        return {}
    prefix = sa_literal(f"{OPPORTUNITY}:") + col(Opportunity.id) + "#"
    # The profile by its key (the primary key's index), the part by its item keys' prefix (an
    # equality: the same under every collation, unlike a range or LIKE).
    on = (col(IndexItem.doc_key) == sa_literal(f"{PROFILE}:") + col(Opportunity.owner_organisation_id)) & (
        func.substr(col(IndexItem.item_key), 1, func.length(prefix)) == prefix
    )
    q = (
        sa_select(
            col(Opportunity.id),
            col(Opportunity.owner_organisation_id),
            col(IndexItem.item_key),
            col(IndexItem.kind),
            col(IndexItem.label),
            col(TextVector.vector),
        )
        .select_from(Opportunity)
        .outerjoin(IndexItem, on)
        .outerjoin(TextVector, col(TextVector.text_hash) == col(IndexItem.text_hash))
        .where(col(Opportunity.id).in_(ids))
        .order_by(Opportunity.id, IndexItem.item_key)
    )
    out: Parts = {}
    for oid, owner, item_key, kind, label, blob in (await session.execute(q)).all():
        recorded = out.setdefault(f"{PROFILE}:{owner}", {}).setdefault(f"{OPPORTUNITY}:{oid}#", [])
        if item_key is not None:
            recorded.append(((item_key, kind, label), from_blob(blob)))
    return out


_ACTIVE_OWNERS = sa_select(col(Organisation.organisation_id)).where(
    col(Organisation.organisation_id).in_(bindparam("owners", expanding=True)), col(Organisation.status) == "active"
)
"""Which of some organisations (``owners``) are active."""


async def refresh_documents(
    ctx: Ctx,
    session: AsyncSession,
    keys: Sequence[str],
    *,
    created: bool = False,
    owners_active: dict[str, bool] | None = None,
) -> None:
    """In a writer's unit of work: record the items of ``keys`` as the session sees them now, and
    index them in this instance as soon as the transaction committed (BM25 at once; the dense side
    with whatever items are already encoded, the rest when the worker has encoded them).

    An opportunity is also an item of its owner's profile: only that item of the profile is
    recorded here and patched into this instance's profile (the work of one opportunity, however
    many the owner published); the other instances' followers load only that part of the profile.
    The change-log entries indexed here are marked as such: this instance's follower skips them.
    ``created``: the documents were created in this unit of work (they have no recorded item yet).
    ``owners_active``: organisation id → whether it is active, as the caller read it in this unit of
    work (the owners of the opportunities among ``keys`` found there are not read again)."""
    await session.flush()
    keys = list(dict.fromkeys(keys))
    sources = await load_sources(session, keys)
    await _record_and_index(ctx, session, keys, sources, created=created, owners_active=owners_active)


async def refresh_opportunity(
    ctx: Ctx,
    uow: CoreUnitOfWork,
    o: Opportunity,
    *,
    created: bool,
    owner_active: bool,
    recorded: Sequence[Sequence[Any]] | None = None,
    along: Along | None = None,
) -> None:
    """:func:`refresh_documents` of one opportunity in a Core unit of work (``o``: its row as
    written there, not an instance of a session; ``owner_active``: whether its owner is an active
    organisation, as the caller read it there). The writer's index gets it once it committed; if
    the unit of work rolls back, the caller passes its ``info`` to :func:`forget_changes`.
    ``recorded``: its rows in ``index_item`` as the caller read them with the row lock
    (:func:`opportunity_recorded`; a JSON null when there are none), not read again. ``along``: the
    write of the opportunity's row, run with the items' (:class:`Along`)."""
    keys = [f"{OPPORTUNITY}:{o.id}"]
    sources = Sources({o.id: o}, {}, {}, {})
    await _record_and_index(
        ctx,
        uow,
        keys,
        sources,
        created=created,
        owners_active={o.owner_organisation_id: owner_active},
        recorded=recorded,
        along=along,
    )


async def _record_and_index(
    ctx: Ctx,
    session: AsyncSession | CoreUnitOfWork,
    keys: list[str],
    sources: Sources,
    *,
    created: bool,
    owners_active: dict[str, bool] | None,
    recorded: Sequence[Sequence[Any]] | None = None,
    along: Along | None = None,
) -> None:
    """The rest of :func:`refresh_documents`, once the documents' rows are loaded (``sources``), in
    an ORM or a Core unit of work (``recorded``, ``along``: see :func:`record_items`)."""
    conn: Any = session if isinstance(session, CoreUnitOfWork) else await session.connection()
    items = sources.items()
    # Each opportunity's items are worked out once (language detection included) and given again
    # under the owner's profile.
    own = {f"{OPPORTUNITY}:{oid}": items.get(f"{OPPORTUNITY}:{oid}", []) for oid in sources.opportunities}
    owners = {o.owner_organisation_id for o in sources.opportunities.values()} - set(sources.organisations)
    known = owners_active or {}
    active_owners = {o for o in owners if known.get(o)}
    owners = {o for o in owners if o not in known}
    if owners:
        result = await conn.execute(_ACTIVE_OWNERS, {"owners": sorted(owners)})
        active_owners |= set(result.scalars())
    parts: dict[str, str] = {}
    for oid, o in sources.opportunities.items():
        if o.owner_organisation_id not in active_owners:
            continue
        profile_key, prefix = f"{PROFILE}:{o.owner_organisation_id}", f"{OPPORTUNITY}:{oid}#"
        # One prefix per profile: two opportunities of one owner in a unit of work record the profile whole.
        if profile_key in parts:
            if isinstance(session, CoreUnitOfWork):
                raise AssertionError("a Core unit of work refreshes one opportunity")
            parts.pop(profile_key)
            items.pop(profile_key, None)
            items |= (await load_sources(session, [profile_key])).items()
            continue
        if profile_key in items:
            continue
        parts[profile_key] = prefix
        published = o.status == OpportunityStatus.ACTIVE.value
        mine = own[f"{OPPORTUNITY}:{oid}"] if published else []
        items[profile_key] = [replace(i, key=f"{OPPORTUNITY}:{oid}{i.key[len(OPPORTUNITY) :]}") for i in mine]
    state = ctx.get(IndexState)
    info = session.info
    info[_WATCHED] = state
    # Created here: the documents and their parts of the owners' profiles have nothing recorded yet.
    vectors = await record_items(
        ctx, session, items, parts, new=set(keys) | set(parts) if created else (), recorded=recorded, along=along
    )
    # Documents rewritten whole came back with their vectors; only the others are read.
    rest = [k for k in keys if k not in vectors and items.get(k)]
    if rest:
        vectors |= await load_vectors(session, rest)
    found = make_documents(sources, vectors)
    # The owner's profile gets this opportunity's items as recorded above (the same texts under
    # other keys, hence the same vectors), patched in after the commit like the documents.
    patches: dict[str, tuple[str, list[tuple[ItemMeta, np.ndarray | None]]]] = {}
    for profile_key, prefix in parts.items():
        opp_key = prefix[:-1]
        recorded = vectors.get(opp_key, []) if items.get(profile_key) else []
        rekeyed = [((f"{opp_key}{k[len(OPPORTUNITY) :]}", kind, label), v) for (k, kind, label), v in recorded]
        patches[profile_key] = (prefix, rekeyed)

    def done() -> None:
        info.pop(_WATCHED, None)
        logged = {key: change_id for change_id, key in info.pop(_LOGGED, [])}
        # A change the follower has already read (it ran between the commit and this hook) was
        # loaded by it, as committed or newer: not applied again here.
        behind = {key for key, change_id in logged.items() if state.inflight.pop(change_id, False)}
        apply(ctx, {k: found.get(k) for k in keys if k not in behind})
        for k in keys:
            if k in logged and k not in behind:
                state.applied[logged[k]] = k
        for profile_key, (prefix, recorded) in patches.items():
            key = change_key(profile_key, prefix)
            if key in logged and key not in behind and patch(ctx, profile_key, {prefix: recorded}):
                state.applied[logged[key]] = key
        state.queued.set()

    if isinstance(session, CoreUnitOfWork):
        session.after_commit(done)
    else:
        after_commit(session, done)


async def feedback_changed(ctx: Ctx, session: AsyncSession) -> None:
    """Tell every instance to reload the feedback votes (after this transaction commits)."""
    await log_changes(ctx, session, [FEEDBACK_KEY])


def update_gauges(ctx: Ctx) -> None:
    """The index's gauges, set when ``/metrics`` is scraped (counting them on every write cost the
    size of the index and of the pending set each time)."""
    index = ctx.get(Engine).index
    INDEX_DOCUMENTS.labels(OPPORTUNITY).set(index.count(OPPORTUNITY))
    INDEX_DOCUMENTS.labels(PROFILE).set(index.count(PROFILE))
    ITEMS_PENDING.set(ctx.get(IndexState).items_pending)


async def change_position(ctx: Ctx) -> int:
    """The last id of the change log."""
    async with ctx.db.read() as session:
        return int((await session.execute(select(func.max(log_order(ctx.db.sqlite))))).scalar() or 0)


APPLY_CHUNK = 64
"""Documents the follower loads and indexes at a time (the event loop answers queries in between)."""


async def catch_up(ctx: Ctx, batch: int = 2000) -> int:
    """Apply the change log past this instance's position; returns how many entries were read."""
    state = ctx.get(IndexState)
    order = log_order(ctx.db.sqlite)
    seen = 0
    while True:
        rows = await ctx.db.read_after(order, state.cursor, batch)
        if not rows:
            return seen
        for r in rows:
            if r.id in state.inflight:
                state.inflight[r.id] = True  # loaded here: its writer's hook leaves it
        # Entries this instance's own writers indexed at their commit are not loaded again.
        fresh = [r for r in rows if state.applied.pop(r.id, None) != r.doc_key]
        keys = list(dict.fromkeys(r.doc_key for r in fresh))
        docs = [k for k in keys if k != FEEDBACK_KEY and not k.startswith(f"{PROFILE_ITEM}:")]
        items_of = [k[len(PROFILE_ITEM) + 1 :] for k in keys if k.startswith(f"{PROFILE_ITEM}:")]
        for part in _chunks(items_of, APPLY_CHUNK):
            # Only an opportunity's items changed in its owner's profile: those items are reloaded
            # and patched in (a profile reloaded whole in this round, or not indexed here, is loaded whole).
            async with ctx.db.read() as session:
                loaded = await load_profile_parts(session, part)
            whole = [d for d in loaded if d in docs or not patch(ctx, d, loaded[d])]
            docs += [d for d in whole if d not in docs]
        for part in _chunks(docs, APPLY_CHUNK):
            async with ctx.db.read() as session:
                found = await load_documents(session, part)
            apply(ctx, found)
            # A backfill logs thousands of documents: queries are answered between two slices.
            await asyncio.sleep(0)
        if FEEDBACK_KEY in keys:
            async with ctx.db.read() as session:
                votes = await load_feedback(session)
            replace_feedback(ctx.get(Engine), votes)
        state.cursor = max(r.id if ctx.db.sqlite else r.seq for r in rows)
        seen += len(rows)
        INDEX_CHANGES.inc(len(rows))


async def follow(ctx: Ctx) -> None:
    """Task: keep this instance's index in step with the change log (woken by local commits, else polling)."""
    state = ctx.get(IndexState)
    interval = ctx.settings.index_poll_interval
    while True:
        # Cleared before reading: a change committed while the log is read wakes the next round at once.
        state.changed.clear()
        try:
            await catch_up(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("index change log unreadable; retrying", error=repr(exc))
        await woken(state.changed, interval)


# -- the encoder worker ------------------------------------------------------------------------------


async def claim(ctx: Ctx, limit: int) -> list[tuple[str, str]]:
    """Claim up to ``limit`` queued texts, shortest first (one batch has texts of similar length),
    for a lease: another worker skips them until it ends (a dead worker's claim runs out).

    Only texts some item still uses are claimed: a text replaced before its turn (an opportunity
    changed just after it was published) is not encoded for nothing; ``prune`` drops it from the
    queue. A text whose item is not committed yet is claimed by the round its commit wakes."""
    state = ctx.get(IndexState)
    now = utcnow()
    used = sa_select(sa_literal(1)).where(col(IndexItem.text_hash) == col(EncodeQueue.text_hash)).exists()
    async with ctx.db.transaction() as session:
        q = (
            select(EncodeQueue.text_hash, EncodeQueue.text)
            .where(or_(col(EncodeQueue.claimed_until).is_(None), col(EncodeQueue.claimed_until) < now), used)
            .order_by(col(EncodeQueue.length), col(EncodeQueue.text_hash))
            .limit(limit)
        )
        if not ctx.db.sqlite:
            q = q.with_for_update(skip_locked=True)
        rows = [(h, t) for h, t in (await session.execute(q)).all()]
        if rows:
            until = now + timedelta(seconds=ctx.settings.index_encode_lease)
            await session.execute(
                update(EncodeQueue)
                .where(col(EncodeQueue.text_hash).in_([h for h, _ in rows]))
                .values(claimed_by=state.worker_id, claimed_until=until)
            )
    return rows


async def store_vectors(ctx: Ctx, rows: list[tuple[str, str]], vectors: np.ndarray) -> None:
    """Store encoded vectors, empty their queue rows, log the documents that use them."""
    hashes = [h for h, _ in rows]
    now = utcnow()
    async with ctx.db.transaction() as session:
        values = [
            {"text_hash": h, "model": MODEL_ID, "vector": np.asarray(v, dtype=np.float32).tobytes(), "created_at": now}
            for h, v in zip(hashes, vectors, strict=True)
        ]
        await session.execute(_insert(ctx, TextVector).values(values).on_conflict_do_nothing())
        await session.execute(delete(EncodeQueue).where(col(EncodeQueue.text_hash).in_(hashes)))
        users = sa_select(col(IndexItem.doc_key), col(IndexItem.item_key)).where(col(IndexItem.text_hash).in_(hashes))
        await log_changes(ctx, session, [change_key(d, _part_of(i)) for d, i in (await session.execute(users)).all()])


def _part_of(item_key: str) -> str | None:
    """The part of a profile an item belongs to when it is one of an opportunity's (``opportunity:<id>#``)."""
    if not item_key.startswith(f"{OPPORTUNITY}:"):
        return None
    head, sep, _ = item_key.partition("#")
    return f"{head}#" if sep else None


async def backlog(ctx: Ctx) -> int:
    """Texts waiting in the queue."""
    async with ctx.db.read() as session:
        return int((await session.execute(select(func.count()).select_from(EncodeQueue))).scalar() or 0)


async def encode_batch(ctx: Ctx) -> int:
    """Claim, encode (off the event loop) and store one batch; returns how many texts."""
    rows = await claim(ctx, ctx.settings.index_encode_batch)
    if not rows:
        return 0
    encoder = ctx.get(Encoder)
    vectors = await asyncio.to_thread(encoder.encode, [t for _, t in rows])
    await store_vectors(ctx, rows, vectors)
    TEXTS_ENCODED.inc(len(rows))
    ctx.get(IndexState).changed.set()
    return len(rows)


async def encode_forever(ctx: Ctx) -> None:
    """Task: encode queued texts while there are any; otherwise wait for a local write or poll."""
    state = ctx.get(IndexState)
    while True:
        # Cleared before claiming: a text queued by a commit during the claim wakes the next round at once.
        state.queued.clear()
        try:
            done = await encode_batch(ctx)
            ENCODE_BACKLOG.set(await backlog(ctx))

        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("encoding a batch failed; retrying", error=repr(exc))
            done = 0
            await asyncio.sleep(ctx.settings.index_poll_interval * 4)
        if done:
            continue
        await woken(state.queued, ctx.settings.index_encode_poll)


# -- start-up and housekeeping ---------------------------------------------------------------------


REBUILD_CHUNK = 2000
"""Documents loaded at a time by a start-up (a large register is never held whole in memory)."""


async def document_keys(session: AsyncSession) -> list[str]:
    """The key of every document the tables make (every opportunity, every organisation's profile)."""
    opps = (await session.execute(select(Opportunity.id).order_by(Opportunity.id))).scalars()
    org_ids = select(Organisation.organisation_id).order_by(Organisation.organisation_id)
    orgs = (await session.execute(org_ids)).scalars()
    return [f"{OPPORTUNITY}:{i}" for i in opps] + [f"{PROFILE}:{i}" for i in orgs]


async def reconcile(ctx: Ctx) -> int:
    """Record the items of every document as its texts are now (a new item definition, a backfill,
    rows written before the vector store): changed documents are queued and logged. Returns how many."""
    changed_count = 0
    async with ctx.db.transaction() as session:
        keys = await document_keys(session)
        recorded = set((await session.execute(select(IndexItem.doc_key).distinct())).scalars())
        for part in _chunks(keys, REBUILD_CHUNK):
            wanted = (await load_sources(session, part)).items()
            stored: dict[str, set[tuple[str, str, str | None, str]]] = {}
            for chunk in _chunks(part):
                q = select(IndexItem).where(col(IndexItem.doc_key).in_(chunk))
                for row in (await session.execute(q)).scalars():
                    stored.setdefault(row.doc_key, set()).add((row.item_key, row.kind, row.lang, row.text_hash))
            changed = {
                key: items
                for key, items in wanted.items()
                if {(i.key, i.kind, i.lang, text_key(i.text)) for i in items} != stored.get(key, set())
            }
            if changed:
                await record_items(ctx, session, changed)
                changed_count += len(changed)
        gone: dict[str, list[Item]] = {key: [] for key in sorted(recorded - set(keys))}
        if gone:
            await record_items(ctx, session, gone)
            changed_count += len(gone)
    return changed_count


async def rebuild(ctx: Ctx) -> int:
    """Fill this instance's index from the database, a slice of documents at a time; the follower
    goes on from the log's position taken first (changes committed during the load are applied again,
    harmlessly)."""
    state = ctx.get(IndexState)
    state.cursor = await change_position(ctx)
    queued = await reconcile(ctx)
    async with ctx.db.read() as session:
        keys = await document_keys(session)
        votes = await load_feedback(session)
    engine = ctx.get(Engine)
    documents = 0
    threshold, engine.merge_threshold = engine.merge_threshold, len(keys) + 1
    try:
        for part in _chunks(keys, REBUILD_CHUNK):
            async with ctx.db.read() as session:
                found = await load_documents(session, part)
            apply(ctx, found)
            documents += sum(1 for v in found.values() if v is not None)
            await asyncio.sleep(0)
    finally:
        engine.merge_threshold = threshold
    replace_feedback(engine, votes)
    built = await asyncio.to_thread(engine.index.build, engine.index.snapshot())
    engine.index.install(built)
    ENCODE_BACKLOG.set(await backlog(ctx))
    log.info("index rebuilt", documents=documents, documents_changed=queued, items_pending=state.items_pending)
    return documents


async def prune(ctx: Ctx) -> None:
    """Drop change-log entries every running instance has long applied (a starting instance rebuilds
    from the tables) and queued texts no document uses any more."""
    horizon = utcnow() - timedelta(seconds=ctx.settings.index_change_retention)
    async with ctx.db.transaction() as session:
        await session.execute(delete(IndexChange).where(col(IndexChange.created_at) < horizon))
        used = select(IndexItem.text_hash).where(col(IndexItem.text_hash) == col(EncodeQueue.text_hash))
        await session.execute(delete(EncodeQueue).where(~used.exists()))


def query_key(match: Match) -> str:
    return f"{OPPORTUNITY}:{match.opportunity_id}"


def counterpart_key(match: Match) -> str:
    return f"{match.counterpart_type}:{match.counterpart_id}"
