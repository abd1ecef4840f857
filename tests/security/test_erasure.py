"""Erasure really erases: after ``POST /contacts/{id}/erase`` the person's address is nowhere on disk.

Real membership and newsletter processes, a Kafka broker of this test's own (so its log
directory is known), SQLite or PostgreSQL. A contact is added with a unique planted address,
the events flow to the newsletter (which also holds the person as a subscriber), the contact is
erased, and then ``grep -a`` over every SQLite file and WAL, every PostgreSQL file of the two
services' schemas, and every Kafka log segment (dead-letter topics included) must not find it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from distretto_dev.kafka_runner import EmbeddedKafka
from distretto_dev.testing import (
    POSTGRES_ENV,
    ServiceProcess,
    free_port,
    identity_headers,
    start_processes,
    stop_processes,
    wait_for,
)
from distretto_shared.identity import Principal, Role


def _admin(audience: str) -> dict[str, str]:
    return identity_headers(Principal(id="user:erasure-test", role=Role.ADMIN), audience)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    """A broker of this module's own: its log directory is what the test greps."""
    with EmbeddedKafka(data_dir=tmp_path_factory.mktemp("erasure-kafka") / "kafka") as kafka:
        yield kafka


@dataclass
class Stack:
    membership: ServiceProcess
    newsletter: ServiceProcess
    data_dir: Path
    kafka_dir: Path
    pg_url: str | None
    schemas: dict[str, str]


def _postgres_data_dir() -> Path:
    """The running cluster's data directory, from the postmaster's command line (we run as root)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"postgres") and b"-D" in args:
            return Path(args[args.index(b"-D") + 1].decode())
    raise AssertionError("no PostgreSQL postmaster found: the erasure test needs the local cluster's files")


def _checkpoint() -> None:
    """Flush shared buffers to the table files (as the postgres superuser, over the local socket)."""
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-Atqc", "CHECKPOINT"], check=True, timeout=60)


@pytest.fixture(params=["sqlite", "postgresql"])
async def stack(request: pytest.FixtureRequest, broker: EmbeddedKafka, tmp_path: Path) -> AsyncIterator[Stack]:
    pg_url = None
    schemas: dict[str, str] = {}
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        **broker.credentials.env(),  # this test's own broker: its super user, not the session's
        "DISTRETTO_TOPIC_PREFIX": f"er{uuid.uuid4().hex[:8]}.",
        "DISTRETTO_DATA_DIR": str(tmp_path / "data"),
        "MEMBERSHIP_ERASURE_SCRUB_DELAY": "0.2",
        "NEWSLETTER_ERASURE_SCRUB_DELAY": "0.2",
    }
    if request.param == "postgresql":
        pg_url = os.environ.get(POSTGRES_ENV)
        if not pg_url:
            pytest.fail(f"the PostgreSQL variant needs {POSTGRES_ENV} (make test sets it)")
        engine = create_async_engine(pg_url)
        async with engine.begin() as conn:
            for name in ("membership", "newsletter"):
                schemas[name] = f"er_{name}_{uuid.uuid4().hex[:8]}"
                await conn.execute(sa.text(f'CREATE SCHEMA "{schemas[name]}"'))
        await engine.dispose()
        for name in ("membership", "newsletter"):
            common[f"{name.upper()}_DATABASE_URL"] = pg_url
            common[f"{name.upper()}_DATABASE_SCHEMA"] = schemas[name]
    membership = ServiceProcess("membership", env=common, log_path=tmp_path / "membership.log")
    newsletter = ServiceProcess(
        "newsletter",
        env={
            **common,
            "NEWSLETTER_MEMBERSHIP_URL": f"http://127.0.0.1:{membership.port}",
            "NEWSLETTER_SMTP_SERVERS": f"127.0.0.1:{free_port()}",
            "NEWSLETTER_CONTACT_FETCH_INTERVAL": "0.5",
        },
        log_path=tmp_path / "newsletter.log",
    )
    try:
        await start_processes([membership, newsletter], timeout=90)
        yield Stack(membership, newsletter, tmp_path / "data", Path(broker.data_dir) / "logs", pg_url, schemas)
    finally:
        stop_processes([newsletter, membership])
        if pg_url:
            engine = create_async_engine(pg_url)
            async with engine.begin() as conn:
                for schema in schemas.values():
                    await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await engine.dispose()


async def _pg_files(stack: Stack) -> list[Path]:
    """Every file of every relation (tables, TOAST, indexes) in the two services' schemas."""
    assert stack.pg_url
    root = _postgres_data_dir()
    engine = create_async_engine(stack.pg_url)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 't', 'i', 'm') "
                    "UNION SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(:schemas) "
                    "AND c.reltoastrelid <> 0"
                ),
                {"schemas": list(stack.schemas.values())},
            )
        ).all()
    await engine.dispose()
    files: list[Path] = []
    for (rel,) in rows:
        if rel:
            files.extend(p for p in (root / rel).parent.glob(Path(rel).name + "*") if p.is_file())
    assert files, "no PostgreSQL table files found"
    return files


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


async def _holders(stack: Stack, planted: bytes) -> list[str]:
    """Every file under the data folders whose bytes contain ``planted`` (``grep -a -l``)."""
    files = _files_under(stack.data_dir) + _files_under(stack.kafka_dir)
    if stack.pg_url:
        _checkpoint()
        files += await _pg_files(stack)
    found = []
    for path in files:
        try:
            if planted in path.read_bytes():
                found.append(str(path))
        except FileNotFoundError:  # a WAL or a relation file removed meanwhile: nothing left in it
            continue
    return found


async def _newsletter_rows(stack: Stack, sql: str) -> int:
    url = stack.pg_url or f"sqlite+aiosqlite:///{stack.data_dir / 'newsletter.db'}"
    engine = create_async_engine(
        url, connect_args={"server_settings": {"search_path": stack.schemas["newsletter"]}} if stack.pg_url else {}
    )
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text(sql))).scalar_one())
    finally:
        await engine.dispose()


async def test_an_erased_contact_leaves_no_trace_on_disk_or_on_kafka(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:12]
    planted = f"planted.{tag}@erasure.example"
    surname = f"Cancellata{tag}"
    async with (
        httpx.AsyncClient(base_url=stack.membership.url, headers=_admin("membership"), timeout=20) as members,
        httpx.AsyncClient(base_url=stack.newsletter.url, headers=_admin("newsletter"), timeout=20) as news,
    ):
        org = await members.post("/organisations", json={"name": f"Erasure Org {tag}", "kind": "company"})
        assert org.status_code == 201, org.text
        # A member: the newsletter queues a welcome mail (name and address in its rendered content).
        assert (await members.post(f"/organisations/{org.json()['id']}/approve")).status_code == 200
        contact = await members.post(
            f"/organisations/{org.json()['id']}/contacts",
            json={
                "first_name": "Pia",
                "last_name": surname,
                "email": planted,
                "phone": "+39 055 000000",
                "consent_newsletter": True,
            },
        )
        assert contact.status_code == 201, contact.text
        contact_id = contact.json()["id"]
        # The newsletter also holds the person as a subscriber of a list of its own.
        assert (await news.post("/lists", json={"slug": f"l{tag}", "name": "Erasure list"})).status_code == 201
        sub = await news.post(
            "/subscribers",
            json={
                "email": planted,
                "name": f"Pia {surname}",
                "lists": [f"l{tag}"],
                "preconfirmed": True,
                "consent_source": "erasure-test",
            },
        )
        assert sub.status_code == 201, sub.text
        # And a newsletter-only subscriber, erased through the newsletter's own route.
        solo = f"solo.{tag}@erasure.example"
        solo_sub = await news.post(
            "/subscribers",
            json={"email": solo, "lists": [f"l{tag}"], "preconfirmed": True, "consent_source": "erasure-test"},
        )
        assert solo_sub.status_code == 201, solo_sub.text

        # The contact's event reached the newsletter, which fetched the address from membership
        # as service:newsletter (the event itself carried none).
        async def fetched() -> bool:
            sql = f"SELECT count(*) FROM member_contact WHERE contact_id = '{contact_id}' AND email = '{planted}'"
            return await _newsletter_rows(stack, sql) == 1

        await wait_for(fetched, timeout=120, what="ContactAdded handled and the details fetched by the newsletter")

        async def welcome_queued() -> bool:
            return await _newsletter_rows(stack, "SELECT count(*) FROM delivery WHERE kind = 'welcome'") == 1

        await wait_for(welcome_queued, timeout=120, what="the welcome mail queued")
        # The grep can find it: before the erasure the address is on disk.
        before = await _holders(stack, planted.encode())
        assert before, "the planted address should be on disk before the erasure"
        # ... but never on a Kafka topic (events carry ids and a hash only).
        assert [f for f in before if f.startswith(str(stack.kafka_dir))] == []

        assert await _holders(stack, solo.encode()), "the newsletter-only address should be on disk before"
        assert (await news.delete(f"/subscribers/{solo_sub.json()['id']}")).status_code == 204
        erased = await members.post(f"/contacts/{contact_id}/erase")
        assert erased.status_code == 200, erased.text

        async def subscriber_gone() -> bool:
            return await _newsletter_rows(stack, "SELECT count(*) FROM subscriber") == 0

        await wait_for(subscriber_gone, timeout=120, what="ContactErased handled by the newsletter")

        left: list[str] = []

        async def scrubbed() -> bool:
            left[:] = [
                *await _holders(stack, planted.encode()),
                *await _holders(stack, surname.encode()),
                *await _holders(stack, solo.encode()),
            ]
            return not left

        # Well within the promised 15 minutes (the scrub runs a moment after each erasure).
        await wait_for(scrubbed, timeout=300, what="the planted address gone from every file")
        assert left == []
        assert await _newsletter_rows(stack, "SELECT count(*) FROM suppression") == 2  # two hashes, no address


def test_kafka_log_dir_is_where_the_broker_writes(broker: EmbeddedKafka) -> None:
    # The grep above is only meaningful if it reads the broker's real log directory.
    logs = Path(broker.data_dir) / "logs"
    assert logs.is_dir() and any(p.name == "meta.properties" for p in logs.iterdir())
