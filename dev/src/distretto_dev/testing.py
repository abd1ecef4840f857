"""Pytest plugin shared by every test folder (loaded by the root ``conftest.py``).

Fixtures:

- ``kafka_bootstrap`` (session): a real Kafka broker. ``KAFKA_BOOTSTRAP_SERVERS``
  if set, otherwise a throwaway broker on free ports in a temporary folder.
- ``topic_prefix``: a unique ``DISTRETTO_TOPIC_PREFIX`` per test, so tests
  sharing the session's broker never see each other's events.
- ``database`` (parametrised ``sqlite`` / ``postgresql``): a fresh database
  target per test — a SQLite file, or a fresh schema in the PostgreSQL
  database named by ``DISTRETTO_TEST_POSTGRES_URL``. When that variable is not
  set the PostgreSQL variant is skipped with the reason, unless
  ``DISTRETTO_REQUIRE_POSTGRES=1`` (CI), where it fails instead.
- ``smtp_sink``: a real SMTP server on a free port (:class:`distretto_dev.smtp_sink.SmtpSink`).
- ``data_dir``: ``DISTRETTO_DATA_DIR`` in the test's temporary folder (a suite that starts apps
  in-process requests it from an autouse fixture of its ``conftest.py``, so relay lock files stay
  out of the work tree).

Settings: ``settings_for(Settings, database, kafka_bootstrap, **overrides)`` is a service's
settings on the test's database and broker, with short polls and quiet logs.

Waiting: every wait here (``wait_for``, ``read_topic``, a service's start) is a guard against a
hang, never a claim about speed. Its timeout is multiplied by ``patience()`` —
``DISTRETTO_TEST_PATIENCE``, 5 by default — so a machine at a load average of 20 makes the
suite slow, not red; a test that needs something to happen waits for it, and only a thing
that never happens fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from distretto_shared.events import Event, encode
from distretto_shared.identity import IDENTITY_HEADER, Keyring, Principal, Role, generate_keypair
from distretto_shared.kafka_security import default_credentials
from distretto_shared.secrets import new_secret
from distretto_shared.settings import ServiceSettings

POSTGRES_ENV = "DISTRETTO_TEST_POSTGRES_URL"


def patience(seconds: float) -> float:
    """``seconds`` of a hang guard, stretched by ``DISTRETTO_TEST_PATIENCE`` (default 5)."""
    factor = float(os.environ.get("DISTRETTO_TEST_PATIENCE") or 5)
    return seconds * max(factor, 1.0)


# One key ring per test session, as `make up` makes one per installation: every process the tests
# start (in-process apps and real processes alike) signs with its own key and trusts them all.
TEST_PROCESSES = (
    "gateway",
    "membership",
    "projects",
    "newsletter",
    "matchmaking",
    "console",
    "partners",
    "example",
    "tests",
)
# Keys already in the environment are kept: pytest-xdist's workers inherit the controller's, and the
# ring the tests sign with must be the one the processes they start trust.
KEYRING = Keyring(
    {name: os.environ.get(f"{name.upper()}_SIGNING_KEY") or generate_keypair()[0] for name in TEST_PROCESSES}
)
for _name in TEST_PROCESSES:
    os.environ[f"{_name.upper()}_SIGNING_KEY"] = KEYRING.private_keys[_name]
os.environ["DISTRETTO_TRUSTED_KEYS"] = KEYRING.env("gateway")["DISTRETTO_TRUSTED_KEYS"]
# Secrets without defaults: random per test session, as `make up` makes them per installation
# (development mode stays off: a test that needs it turns it on itself).
for _secret in ("NEWSLETTER_SECRET_KEY", "PARTNERS_SECRET_KEY"):
    os.environ.setdefault(_secret, new_secret())
# The services delete an outbox row once the broker acknowledged it; the tests keep published rows
# (as an operator auditing the outbox would), so a test reads back every event a use case wrote even
# after the relay published it. The relay's delete is tested on its own (tests/backbone/test_outbox.py).
for _name in TEST_PROCESSES:
    os.environ.setdefault(f"{_name.upper()}_RELAY_RETENTION_SECONDS", "3600")
GATEWAY_SIGNER = KEYRING.signer("gateway")

ADMIN = Principal(id="user:test-admin", role=Role.ADMIN)
"""The caller tests act as unless they say otherwise."""


def identity_headers(principal: Principal, audience: str, ttl: int = 900) -> dict[str, str]:
    """The credential the gateway would send ``audience`` for ``principal`` (long-lived enough for a
    slow test; the gateway's own live a minute)."""
    return {IDENTITY_HEADER: GATEWAY_SIGNER.mint(principal, audience, ttl=ttl)}


@dataclass(frozen=True)
class DatabaseTarget:
    """Where a test's service keeps its data."""

    backend: str
    url: str
    schema: str | None = None

    def env(self, prefix: str) -> dict[str, str]:
        """Environment variables pointing a service (``<PREFIX>_DATABASE_URL`` …) here."""
        env = {f"{prefix}_DATABASE_URL": self.url}
        if self.schema:
            env[f"{prefix}_DATABASE_SCHEMA"] = self.schema
        return env


S = TypeVar("S", bound=ServiceSettings)

TEST_SETTINGS: dict[str, Any] = {
    "relay_poll_interval": 0.2,
    "consumer_backoff_initial": 0.05,
    "log_json": False,
    "log_level": "WARNING",
}
"""What every service under test gets unless it says otherwise: the relay and the consumers' first
retry quick (a test waits for them), logs quiet."""


def settings_for(settings_cls: type[S], database: DatabaseTarget, kafka_bootstrap: str, **overrides: Any) -> S:
    """``settings_cls`` on the test's database and broker, with :data:`TEST_SETTINGS`; ``overrides`` win."""
    values: dict[str, Any] = {
        "database_url": database.url,
        "database_schema": database.schema,
        "kafka_bootstrap_servers": kafka_bootstrap,
        **TEST_SETTINGS,
        **overrides,
    }
    return settings_cls(**values)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``DISTRETTO_DATA_DIR`` in the test's temporary folder: local state (relay lock files, default
    SQLite files) of the apps a test starts stays out of the work tree."""
    monkeypatch.setenv("DISTRETTO_DATA_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


@pytest.fixture
async def smtp_sink() -> AsyncIterator[Any]:
    """A real SMTP server (:class:`distretto_dev.smtp_sink.SmtpSink`) for this test, stopped after it."""
    from distretto_dev.smtp_sink import SmtpSink

    sink = await SmtpSink().start()
    yield sink
    await sink.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the session's real Kafka broker."""
    from distretto_dev.kafka_runner import session_broker

    with session_broker(tmp_path_factory.mktemp("kafka")) as bootstrap:
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        yield bootstrap


def own_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A broker of this test's own, started (one the test may stop and start again, unlike the
    session's), with its super user's credentials in the environment; stop it in ``finally``."""
    from distretto_dev.kafka_runner import EmbeddedKafka

    broker = EmbeddedKafka(
        data_dir=tmp_path / "kafka", port=free_port(), controller_port=free_port(), heap="256m"
    ).start()
    for name, value in broker.credentials.env().items():
        monkeypatch.setenv(name, value)
    return broker


@pytest.fixture
def topic_prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """A unique topic prefix for this test."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    monkeypatch.setenv("DISTRETTO_TOPIC_PREFIX", prefix)
    return prefix


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DatabaseTarget]:
    """A fresh database target per test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield DatabaseTarget("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("DISTRETTO_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{POSTGRES_ENV} is not set but DISTRETTO_REQUIRE_POSTGRES=1")
        pytest.skip(f"PostgreSQL variant needs {POSTGRES_ENV} (make test sets it up)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield DatabaseTarget("postgresql", url, schema)
    await drop_schema(url, schema)


async def drop_schema(url: str, schema: str) -> None:
    """Drop a test schema and everything in it."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``predicate`` (plain or async) until it returns something truthy; fail with ``what``
    after ``patience(timeout)``."""
    timeout = patience(timeout)
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = predicate()
        if isinstance(last, Awaitable):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: last={last!r}")


async def publish_events(bootstrap: str, events: list[Event], *, source: str = "/tests") -> list[str]:
    """Publish events straight to Kafka (as another service would); returns their ids."""
    from distretto_shared.topics import topic_name

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **default_credentials().aiokafka())
    await producer.start()
    ids = []
    try:
        for event in events:
            key, headers, body = encode(event, source=source)
            await producer.send_and_wait(
                topic_name(event.topic),
                value=body,
                key=key.encode(),
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
            ids.append(headers["ce_id"])
    finally:
        await producer.stop()
    return ids


async def read_topic(bootstrap: str, topic: str, *, timeout: float = 10.0, min_count: int = 0) -> list[Any]:
    """Every record of ``topic`` from the start (waits until ``min_count`` arrived or ``timeout``)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **default_credentials().aiokafka(),
    )
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        deadline = asyncio.get_running_loop().time() + patience(timeout)
        while not partitions and asyncio.get_running_loop().time() < deadline:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await asyncio.sleep(0.2)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
            if min_count and len(records) >= min_count:
                end = await consumer.end_offsets(tps)
                if all([await consumer.position(tp) >= end[tp] for tp in tps]):
                    break
            if not min_count and not batch:
                break
    finally:
        await consumer.stop()
    return records


def headers_of(record: Any) -> dict[str, str]:
    """A record's headers as a dict of str."""
    return {k: v.decode() for k, v in record.headers or ()}


def identity_auth(principal: Principal | None, audience: str) -> Any:
    """An httpx ``auth`` that sends a fresh credential for ``principal`` with every request
    (``None``: no credential at all, as an attacker calling the service directly)."""
    import httpx

    class _IdentityAuth(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
            if principal is not None and IDENTITY_HEADER not in request.headers:
                request.headers.update(identity_headers(principal, audience))
            yield request

    return _IdentityAuth()


@contextlib.asynccontextmanager
async def service_client(app: Any, principal: Principal | None = ADMIN) -> AsyncIterator[Any]:
    """Run an app's lifespan (migrations, relay, broker) and yield an httpx client talking to it in-process.

    Every request carries a credential for ``principal`` (an admin unless told otherwise; ``None``
    sends none). A request that sets ``X-Distretto-Identity`` itself keeps its own.
    """
    import httpx
    from asgi_lifespan import LifespanManager

    # The gateway's app authenticates people itself: it gets no service credential.
    audience = getattr(getattr(app, "state", None), "service_name", None)
    if audience is None:
        principal = None
    try:
        # Both under the suite's 300 s per test together with a failing wait_for (150 s): a hang is
        # reported with its tasks below, not cut off by the test's timeout.
        async with LifespanManager(app, startup_timeout=patience(40), shutdown_timeout=patience(20)) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://service", auth=identity_auth(principal, audience or "")
            ) as client:
                yield client
    except TimeoutError:
        # A start or a stop that hangs: show where every task of the loop is waiting (in the
        # test's report), not only that the time ran out.
        print(f"service_client: the app's start or stop timed out; {len(asyncio.all_tasks())} tasks:", file=sys.stderr)
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        raise


class ServiceProcess:
    """A service run as a real process (``python -m <module> serve``), for end-to-end and crash tests."""

    def __init__(
        self, module: str, *, port: int | None = None, env: dict[str, str] | None = None, log_path: Path | None = None
    ) -> None:
        self.module = module
        self.port = port or free_port()
        self.env = env or {}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the running service."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        """The service's name (its module)."""
        return self.module.split(".")[0]

    def client(self, principal: Principal | None = ADMIN, **kwargs: Any) -> Any:
        """An httpx client for this process, sending a credential for ``principal`` (admin by default)."""
        import httpx

        return httpx.AsyncClient(base_url=self.url, auth=identity_auth(principal, self.name), **kwargs)

    def launch(self) -> ServiceProcess:
        """Start the process without waiting for it (:meth:`wait_started` waits). It dies with the
        test process, even one killed by SIGKILL or interrupted before its ``finally``: util-linux's
        ``setpriv --pdeathsig`` sets ``PR_SET_PDEATHSIG`` and execs the service (no ``preexec_fn``,
        unsafe in a process with threads). Without ``setpriv`` it is left running in that case."""
        env = {**os.environ, **self.env}
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        setpriv = shutil.which("setpriv")
        die_with_us = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        self.proc = subprocess.Popen(
            [*die_with_us, sys.executable, "-m", self.module, "serve", "--port", str(self.port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    async def wait_started(self, timeout: float = 60.0) -> ServiceProcess:
        """Wait until the launched process answers ``/healthz`` (killed if it does not in time)."""
        import httpx

        assert self.proc is not None, "launch() first"
        timeout = patience(timeout)
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while asyncio.get_running_loop().time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.module} exited with {self.proc.returncode}; log: {self.log_path}")
                try:
                    if (await client.get(self.url + "/healthz", timeout=1)).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.module} did not answer /healthz within {timeout}s; log: {self.log_path}")

    async def start(self, timeout: float = 60.0) -> ServiceProcess:
        """Start the process and wait until ``/healthz`` answers."""
        return await self.launch().wait_started(timeout)

    def kill(self) -> None:
        """SIGKILL: the crash a test wants to survive."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM: the graceful stop starts (:meth:`stop` waits for it)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        stop_processes([self], timeout)


def stop_processes(processes: list[ServiceProcess], timeout: float = 20.0) -> None:
    """SIGTERM every process at once, then wait for each (SIGKILL if it is not gone within
    ``timeout`` s of the signal): a stack stops in about the time of its slowest service,
    not the sum. No service waits for another to stop."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        if process.proc is None:
            continue
        try:
            process.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


async def start_processes(processes: list[ServiceProcess], timeout: float = 60.0) -> None:
    """Launch every process, then wait until each answers ``/healthz``: their start-ups overlap
    (a stack of services starts in about the time of its slowest, not the sum). No service waits
    for another at start-up, as under ``make up``. If one fails, every one of them is killed."""
    waits: list[asyncio.Task[ServiceProcess]] = []
    try:
        for process in processes:
            process.launch()
        waits = [asyncio.create_task(process.wait_started(timeout)) for process in processes]
        await asyncio.gather(*waits)
    except BaseException:
        for wait in waits:
            wait.cancel()
        for process in processes:
            process.kill()
        raise


# --------------------------------------------------------------------------------------------------
# kcat: an independent Kafka client for the tests of users and ACLs
# --------------------------------------------------------------------------------------------------

KCAT_MIN_LIBRDKAFKA = (2, 6, 1)
"""librdkafka before 2.6.1 computes a SCRAM proof Kafka 4.x rejects (a doubled nonce)."""


def _kcat_env(tmp: Path) -> dict[str, str]:
    """kcat's environment: when the system's librdkafka is too old for SCRAM with Kafka 4.x (Debian 12
    ships 2.0.2), the one confluent-kafka installs beside this venv is put first on the library path."""
    import re
    import shutil

    kcat_bin = shutil.which("kcat")
    if kcat_bin is None:
        pytest.fail("kcat is not installed: `make bootstrap` installs Debian's kcat package")
    out = subprocess.run([kcat_bin, "-V"], capture_output=True, text=True, timeout=30, check=False).stdout
    found = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", out)
    version = tuple(int(x) for x in found.groups()) if found else (0, 0, 0)
    if version >= KCAT_MIN_LIBRDKAFKA:
        return dict(os.environ)
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    candidates = sorted(libs.glob("librdkafka*.so*"))
    if not candidates:
        pytest.fail(f"kcat links librdkafka {version} (< 2.6.1) and confluent-kafka ships no librdkafka in {libs}")
    # One folder per venv, and the link checked every time: a link left in the temporary folder by an earlier clone
    # (its venv since deleted) would otherwise dangle, and kcat would silently fall back to the
    # system's librdkafka — whose SCRAM proof the broker refuses as "invalid credentials".
    import hashlib

    target = candidates[0]
    folder = tmp / hashlib.sha256(str(target).encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "librdkafka.so.1"
    if not (link.is_symlink() and link.resolve() == target.resolve()):
        staged = folder / f".librdkafka.so.1.{os.getpid()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(target)
        os.replace(staged, link)  # atomic: a concurrent test process sees the old link or the new one
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join([str(folder), str(libs)])}


def kcat(
    bootstrap: str, username: str, password: str, *args: str, timeout: float = 60.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``kcat -b bootstrap`` with SASL/SCRAM-SHA-512 credentials (``-X`` options) and ``args``."""
    import shutil
    import tempfile

    env = _kcat_env(Path(tempfile.gettempdir()) / f"distretto-kcat-{os.getuid()}")
    cmd = [
        shutil.which("kcat") or "kcat",
        "-b",
        bootstrap,
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        "sasl.mechanisms=SCRAM-SHA-512",
        "-X",
        f"sasl.username={username}",
        "-X",
        f"sasl.password={password}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False, input=input or "")
