"""The encoder worker in a process of its own, at a lower OS priority than the API.

Encoding a text is real work a write causes (tens of milliseconds of CPU per text), but it must
not starve the requests: in the service's process it competed with the event loop for the GIL
and, on a small machine, for the cores. A thread cannot be given a lower priority, a process can:

- ``MATCHMAKING_INDEX_ENCODER_PROCESS=true`` (the default): the serving process starts
  ``python -m matchmaking encode-worker --child`` and keeps it running (restarted if it dies).
  The child lowers its own priority (``os.nice(MATCHMAKING_INDEX_ENCODER_NICE)``), reads its
  database settings from its stdin (never from the command line), and is woken through that
  pipe by every local commit that queued texts; it writes one line to its stdout per stored
  batch (the number of texts), which wakes this instance's index follower at once. It exits when
  its stdin closes (the parent stopped or died).
- ``python -m matchmaking encode-worker``: the same worker on its own, settings from the
  environment (a deployment that runs the encoder apart: its serving instances set
  ``MATCHMAKING_INDEX_ENCODER=false``). It polls the queue every ``MATCHMAKING_INDEX_ENCODE_POLL``.
- ``MATCHMAKING_INDEX_ENCODER_PROCESS=false``: the worker is a task of the serving process
  (what the tests use; the model then shares the process with the API).

Several workers never encode the same text: each claims queued texts for a lease
(``search.indexing.claim``), whichever process it runs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, cast

from distretto_shared.context import Context
from distretto_shared.db import Database
from distretto_shared.identity import Principal, Role
from distretto_shared.logging import configure_logging, get_logger
from matchmaking.common import Ctx
from matchmaking.config import Settings
from matchmaking.search import indexing
from matchmaking.search.embeddings import Encoder, shared_encoder

log = get_logger(__name__)

COMMAND = "encode-worker"
CHILD_FLAG = "--child"
PASSED = (
    "database_url",
    "database_schema",
    "embedding_threads",
    "index_encode_batch",
    "index_encode_lease",
    "index_encode_poll",
    "index_poll_interval",
    "index_encoder_nice",
    "log_level",
    "log_json",
)
"""The parent's settings the child needs (sent through its stdin: a database URL may hold a password)."""
RESTART_DELAY = 1.0


# -- the parent's side ---------------------------------------------------------------------------------


@dataclass
class EncoderChild:
    """The serving process's encoder child (``ctx.get(EncoderChild)``)."""

    pid: int | None = None
    """The running child's process id (None: not running)."""
    starts: int = 0
    """How many times it was started."""


async def supervise(ctx: Ctx) -> None:
    """Task of the serving process: run the encoder child, wake it on local commits that queued
    texts, wake the follower when it stored vectors; start it again if it dies."""
    state = ctx.get(indexing.IndexState)
    child = ctx.get(EncoderChild)
    config = json.dumps({name: getattr(ctx.settings, name) for name in PASSED}).encode() + b"\n"
    while True:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "matchmaking",
            COMMAND,
            CHILD_FLAG,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        child.pid, child.starts = proc.pid, child.starts + 1
        log.info("encoder process started", pid=proc.pid)
        stdin = proc.stdin
        waker: asyncio.Task[None] | None = None
        try:
            stdin.write(config)
            await stdin.drain()
            waker = asyncio.create_task(_wake(state, stdin), name="encoder-process-wake")
            async for line in proc.stdout:
                with contextlib.suppress(ValueError):
                    indexing.TEXTS_ENCODED.inc(int(line))
                state.changed.set()
            log.warning("encoder process exited; starting it again", pid=proc.pid, returncode=await proc.wait())
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.warning("encoder process unreachable; starting it again", pid=proc.pid, error=repr(exc))
        finally:
            child.pid = None
            if waker is not None:
                waker.cancel()
            await _stop(proc)
        await asyncio.sleep(RESTART_DELAY)


WAKE_INTERVAL = 0.05
"""Seconds between two wake-ups passed to the child: the commits of that time wake it once (a
write to its pipe per commit cost the serving process more than the rest of the hand-over; the
child takes longer than this to encode a batch anyway, and encodes on while texts are queued)."""


async def _wake(state: indexing.IndexState, stdin: asyncio.StreamWriter) -> None:
    """Pass on the local commits that queued texts (those of one ``WAKE_INTERVAL``: one line)."""
    while True:
        await state.queued.wait()
        state.queued.clear()
        stdin.write(b"\n")
        await stdin.drain()
        await asyncio.sleep(WAKE_INTERVAL)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    if proc.stdin is not None:
        proc.stdin.close()  # the child's signal to stop
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout=5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


# -- the worker's side -----------------------------------------------------------------------------------


@dataclass
class _WorkerService:
    """What a worker context needs of a service: its name, its event source and its singletons
    (a worker has no HTTP app, broker, relay or consumers)."""

    spec: Any
    source: str = "/distretto/matchmaking"
    singletons: dict[type, Any] = field(default_factory=dict)


@dataclass
class _Spec:
    name: str = "matchmaking"


def worker_context(settings: Settings) -> tuple[Ctx, Database]:
    """A context with the database, the encoder and an index state: what the worker uses."""
    db = Database(settings.resolved_database_url(), schema=settings.database_schema)
    service = _WorkerService(spec=_Spec())
    service.singletons[Encoder] = shared_encoder(settings.embedding_threads)
    service.singletons[indexing.IndexState] = indexing.IndexState()
    principal = Principal(id="service:matchmaking", role=Role.SERVICE)
    return Context(principal=principal, db=db, settings=settings, service=cast(Any, service)), db


def _encoded_total() -> int:
    return int(sum(s.value for m in indexing.TEXTS_ENCODED.collect() for s in m.samples if s.name.endswith("_total")))


async def run_worker(settings: Settings, *, child: bool) -> None:
    """Encode queued texts until stopped (a child: until its stdin closes)."""
    ctx, db = worker_context(settings)
    state = ctx.get(indexing.IndexState)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(indexing.encode_forever(ctx), name="index-encoder")]
    if child:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def woken() -> None:
            while await reader.readline():
                state.queued.set()
            stop.set()  # the parent closed the pipe, or died

        async def report() -> None:
            reported = _encoded_total()
            while True:
                await state.changed.wait()
                state.changed.clear()
                total = _encoded_total()
                sys.stdout.write(f"{total - reported}\n")
                sys.stdout.flush()
                reported = total

        tasks += [asyncio.create_task(woken()), asyncio.create_task(report())]
    log.info("encoder worker running", child=child, nice=os.nice(0))
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.dispose()


def main(argv: list[str]) -> None:
    """``python -m matchmaking encode-worker [--child]``."""
    child = CHILD_FLAG in argv
    try:
        if child:
            overrides = json.loads(sys.stdin.buffer.readline() or b"{}")
            if not isinstance(overrides, dict):
                raise ValueError("not an object")
            settings = Settings(**overrides)
        else:
            settings = Settings()
    except ValueError as exc:  # json's and pydantic's errors are ValueErrors
        where = "on stdin" if child else "in the environment"
        print(f"encode-worker: unreadable settings {where}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    settings.service_name = "matchmaking"
    configure_logging("matchmaking", settings.log_level, settings.log_json)
    if settings.index_encoder_nice:
        os.nice(settings.index_encoder_nice)
    asyncio.run(run_worker(settings, child=child))
