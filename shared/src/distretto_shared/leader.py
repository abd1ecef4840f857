"""One leader per periodic job among the instances of a service (docs/architecture.md, "Several instances").

Several instances of a service share its database; a periodic job (the lapse scan, the start of
scheduled campaigns) must run in one of them per round. Before each round an instance asks
:meth:`JobLeader.lead`; only the holder of the job's lock runs the body.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated
  connection for as long as the instance leads. The key is the schema, the service and the job
  (advisory locks are database-wide). When the leader's process dies, its connection closes and
  the server releases the lock at once: the next round of another instance takes over. Each
  round the leader checks that its connection still answers; when it does not (the database
  restarted, the connection was cut) it stops leading until it wins the lock again.
- SQLite: an exclusive ``flock`` on a file beside the database file (a SQLite database can only be
  shared by processes of one machine, and the kernel releases the lock when the process dies,
  ``kill -9`` included). An in-memory database belongs to one process: it always leads.

Why not a lease row with an expiry: taking over would wait for the expiry, where the lock is free
the moment the leader is gone, and a lease needs a table in every service's schema. A job body
must still be safe to run twice in a row (a leader cut off from the database can finish the round
it started while another instance begins the next): every job re-checks its rows in the unit of
work that changes them, under their row locks (:func:`distretto_shared.db.load`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from distretto_shared import metrics
from distretto_shared.db import Database
from distretto_shared.logging import get_logger

log = get_logger(__name__)


def advisory_key(service: str, job: str, schema: str | None) -> int:
    """The job's advisory-lock key: a signed 64-bit number from the schema, service and job."""
    digest = hashlib.blake2b(f"distretto-job/{schema or ''}/{service}/{job}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_path(url: str, service: str, job: str) -> Path | None:
    """The lock file of a job on a SQLite database file (``None`` for an in-memory database)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    path = Path(database)
    return path.with_name(f"{path.name}.{service}.{job}.leader.lock")


class JobLeader:
    """Leadership of one periodic job of one service instance."""

    def __init__(self, db: Database, service: str, job: str) -> None:
        self.db = db
        self.service = service
        self.job = job
        self.leading = False
        """True while this instance holds the job's lock."""
        self.attempts = 0
        """Rounds this instance asked to lead (led or not)."""
        self._conn: AsyncConnection | None = None
        self._file: IO[str] | None = None
        self._key = advisory_key(service, job, db.schema)
        metrics.PERIODIC_LEADER.labels(service, job).set(0)

    async def lead(self) -> bool:
        """True when this instance should run this round: it holds the lock (taking it if free)."""
        self.attempts += 1
        was = self.leading
        try:
            self.leading = await (self._lead_file() if self.db.sqlite else self._lead_postgres())
        except Exception as exc:
            log.warning("periodic job leadership unknown; not running this round", job=self.job, error=repr(exc))
            await self._drop()
            self.leading = False
        if self.leading != was:
            log.info("periodic job leader" if self.leading else "periodic job follower", job=self.job)
        metrics.PERIODIC_LEADER.labels(self.service, self.job).set(1 if self.leading else 0)
        return self.leading

    async def _lead_postgres(self) -> bool:
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT 1"))
                await self._conn.commit()
                return True
            except Exception as exc:
                # The connection (and with it the lock) is gone: another instance may lead now.
                log.warning("periodic job lost its lock connection", job=self.job, error=repr(exc))
                await self._drop()
        conn = await self.db.engine.connect()
        try:
            got = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key})).scalar())
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if got:
            self._conn = conn
            return True
        await conn.close()
        return False

    async def _lead_file(self) -> bool:
        if self._file is not None:
            return True
        path = lock_path(self.db.url, self.service, self.job)
        if path is None:
            return True
        fh = path.open("a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._file = fh
        return True

    async def release(self) -> None:
        """Give the lock up (the instance stops): another instance leads from its next round."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                await self._conn.commit()
        await self._drop()
        self.leading = False
        with contextlib.suppress(KeyError):
            metrics.PERIODIC_LEADER.remove(self.service, self.job)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()  # never back to the pool: it may still hold the lock
            with contextlib.suppress(Exception):
                await conn.close()
        fh: Any
        fh, self._file = self._file, None
        if fh is not None:
            with contextlib.suppress(Exception):
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
