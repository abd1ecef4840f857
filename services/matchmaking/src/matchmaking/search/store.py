"""Where the ranking index's shared state lives: the service database.

- ``index_item``: the items of every indexed document (an opportunity, a competence profile's
  facets), each with the fingerprint of its text.
- ``text_vector``: one vector per fingerprint (hash of the model id and the text): a text is
  encoded once, whatever document, instance or restart needs it again.
- ``encode_queue``: texts still to encode, claimed by an encoder worker for a lease.
- ``index_change``: the change log every instance's in-memory index follows, in commit order
  (:func:`log_order`): on PostgreSQL each entry gets its ``seq`` at its transaction's commit, under
  a transaction lock taken there by the database (migration 0004); SQLite has one writer at a
  time, its ids are in commit order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field as SQLField

from matchmaking.tables import Base, timestamp_column


class IndexItem(Base, table=True):
    """One item of an indexed document (its text is what gets encoded)."""

    __tablename__ = "index_item"

    doc_key: str = SQLField(primary_key=True, max_length=80)
    item_key: str = SQLField(primary_key=True, max_length=120)
    kind: str = SQLField(max_length=32)
    lang: str | None = SQLField(default=None, max_length=8)
    label: str = SQLField(default="", max_length=300)
    text_hash: str = SQLField(max_length=64, index=True)


class TextVector(Base, table=True):
    """The vector of one text under one model (the key is the hash of both)."""

    __tablename__ = "text_vector"

    text_hash: str = SQLField(primary_key=True, max_length=64)
    model: str = SQLField(max_length=80)
    vector: bytes = SQLField(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = timestamp_column()


class EncodeQueue(Base, table=True):
    """A text waiting for its vector."""

    __tablename__ = "encode_queue"

    text_hash: str = SQLField(primary_key=True, max_length=64)
    text: str = SQLField(sa_type=sa.Text)
    length: int = SQLField(index=True)
    claimed_by: str | None = SQLField(default=None, max_length=64)
    claimed_until: datetime | None = SQLField(default=None, sa_type=sa.DateTime(timezone=True))
    created_at: datetime = timestamp_column()


class IndexChange(Base, table=True):
    """A document whose index entry must be reloaded from the database (by every instance)."""

    __tablename__ = "index_change"

    id: int | None = SQLField(default=None, primary_key=True)
    doc_key: str = SQLField(max_length=80)
    created_at: datetime = timestamp_column()
    seq: int | None = SQLField(default=None, sa_type=sa.BigInteger, index=True)
    """PostgreSQL: the entry's place in commit order, given at its commit (SQLite: empty)."""


def log_order(sqlite: bool) -> Any:
    """The change log's commit-order column: ``seq`` on PostgreSQL (given at commit), ``id`` on SQLite
    (one writer at a time). A reader that has read up to ``n`` has seen every committed entry below."""
    return IndexChange.id if sqlite else IndexChange.seq
