"""Embedded Apache Kafka for development, tests, CI and benchmarks (ARCHITECTURE.md section 5).

No Docker and no Apache download site: the broker's jars come from Maven Central through
``deploy/kafka/pom.xml`` (``mvn dependency:copy-dependencies``) into a cache folder, and the broker
runs as a plain ``java -cp 'libs/*' kafka.Kafka`` process in KRaft combined mode
(``process.roles=broker,controller``), single node, replication factors 1.

Public API:

* :func:`fetch_jars` resolves the jars once and returns the ``libs`` folder.
* :class:`EmbeddedKafka` formats storage, starts the JVM in its own process group, waits until the
  broker answers a metadata request, and stops it (SIGTERM to the group, SIGKILL if needed).
* :func:`session_broker` is a context manager for test sessions: it yields
  ``$KAFKA_BOOTSTRAP_SERVERS`` if set, otherwise a throwaway broker on free ports.
* :func:`main` is the ``distretto-kafka`` CLI: ``fetch``, ``start``, ``stop``, ``status``, ``run``.

Security: clients connect with SASL/SCRAM-SHA-512 only (listener ``SASL_PLAINTEXT``, loopback), and
every request is authorised by KRaft's ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=
false``: a user without ACLs can do nothing. The super user ``admin`` gets its SCRAM credential when
the storage is formatted (``kafka-storage format --add-scram``); its password is
``$DISTRETTO_KAFKA_ADMIN_PASSWORD`` or a random one kept owner-only in ``<data dir>/admin-password``
— never a default. The controller listener stays on loopback and authenticates the broker with
SASL/PLAIN as the same super user (KRaft controllers cannot check SCRAM: the credentials live in the
metadata they serve). Services, partners and tools get their own users and ACLs
(:mod:`distretto_shared.kafka_security`). An authenticated session lasts at most
``connections.max.reauth.ms`` (:data:`DEFAULT_REAUTH_MS`, one hour; ``$DISTRETTO_KAFKA_REAUTH_MS``):
then the client must authenticate again on the same connection (KIP-368) or the broker closes it,
so a deleted user's (a revoked partner's) open connections end within that time.

Java 17+ and Maven are the only system prerequisites; :func:`ensure_java` installs them with apt-get
when running as root, and otherwise says exactly what to install.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from distretto_shared.kafka_security import ADMIN_USER, KafkaCredentials, new_password
from distretto_shared.topics import min_insync_replicas

__all__ = [
    "EmbeddedKafka",
    "EmbeddedKafkaCluster",
    "KafkaRunnerError",
    "cache_dir",
    "default_data_dir",
    "ensure_java",
    "fetch_jars",
    "kafka_version",
    "main",
    "probe_broker",
    "repo_root",
    "session_broker",
]

POM_RELPATH = Path("deploy") / "kafka" / "pom.xml"
LOG4J_RELPATH = Path("deploy") / "kafka" / "log4j2.properties"
COMPLETE_MARKER = ".complete"
PIDFILE_NAME = "kafka.pid"
ADMIN_PASSWORD_FILE = "admin-password"
ADMIN_PASSWORD_ENV = "DISTRETTO_KAFKA_ADMIN_PASSWORD"
REAUTH_MS_ENV = "DISTRETTO_KAFKA_REAUTH_MS"
DEFAULT_REAUTH_MS = 3_600_000
"""``connections.max.reauth.ms``: the longest an authenticated session lives before the client must
authenticate again (librdkafka ≥ 2.2 and the Java client do it in place; aiokafka does not, so its
connections are closed and reopened: once an hour is harmless). A removed SCRAM user's sessions end then."""
DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
MIN_JAVA = 17
APT_PACKAGES = ("openjdk-17-jre-headless", "maven")

_T = TypeVar("_T")


class KafkaRunnerError(RuntimeError):
    """Raised when the jars cannot be fetched or the broker cannot be started or stopped."""


# --------------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------------


def repo_root() -> Path:
    """Return the repository root: the nearest ancestor holding ``deploy/kafka/pom.xml``.

    Walks up from this file first (editable install in the workspace), then from the current
    working directory (in case the package was installed elsewhere).
    """
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / POM_RELPATH).is_file():
                return candidate
    raise KafkaRunnerError(
        f"cannot find {POM_RELPATH} above {Path(__file__).resolve().parent} or {Path.cwd()}; "
        "run from inside the Distretto repository"
    )


def kafka_version(pom: Path | None = None) -> str:
    """Return the ``kafka.version`` property declared in ``deploy/kafka/pom.xml``."""
    pom = pom or repo_root() / POM_RELPATH
    root = ET.parse(pom).getroot()
    ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
    node = root.find(f"{ns}properties/{ns}kafka.version")
    if node is None or not (node.text or "").strip():
        raise KafkaRunnerError(f"{pom} has no <properties><kafka.version>")
    return (node.text or "").strip()


def cache_dir() -> Path:
    """Return ``$DISTRETTO_CACHE_DIR`` or ``<repo root>/.cache``."""
    env = os.environ.get("DISTRETTO_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else repo_root() / ".cache"


def default_data_dir() -> Path:
    """Return the data folder used by ``distretto-kafka start``: ``<repo root>/var/kafka``."""
    return repo_root() / "var" / "kafka"


# --------------------------------------------------------------------------------------------------
# Java and Maven
# --------------------------------------------------------------------------------------------------


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" style
        major = int(match.group(2))
    return major


def _missing_tools(need_maven: bool) -> list[str]:
    missing: list[str] = []
    java = shutil.which("java")
    if java is None:
        missing.append("java (17+)")
    else:
        major = _java_major(java)
        if major is None or major < MIN_JAVA:
            missing.append(f"java 17+ (found {java}, version {major})")
    if need_maven and shutil.which("mvn") is None:
        missing.append("mvn (Maven)")
    return missing


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"distretto-kafka: installing {' '.join(APT_PACKAGES)} with apt-get ...", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    packages = list(APT_PACKAGES)
    probe = subprocess.run(["apt-cache", "show", "openjdk-17-jre-headless"], capture_output=True, env=env, check=False)
    if probe.returncode != 0:  # e.g. Debian 13 ships only newer JDKs
        packages[0] = "default-jre-headless"
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def ensure_java(need_maven: bool = True) -> None:
    """Make sure Java 17+ (and Maven if ``need_maven``) are on PATH.

    When something is missing and we run as root with apt-get available, installs
    ``openjdk-17-jre-headless maven`` non-interactively; otherwise raises :class:`KafkaRunnerError`
    saying exactly what to install.
    """
    missing = _missing_tools(need_maven)
    if not missing:
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        try:
            _apt_install()
        except subprocess.CalledProcessError as exc:
            raise KafkaRunnerError(f"apt-get failed ({exc}); install {' '.join(APT_PACKAGES)}") from exc
        missing = _missing_tools(need_maven)
        if not missing:
            return
    raise KafkaRunnerError(
        f"missing {', '.join(missing)}. Install Java 17+ and Maven, e.g. "
        f"'sudo apt-get install -y {' '.join(APT_PACKAGES)}' (Debian/Ubuntu), "
        "'sudo dnf install -y java-17-openjdk-headless maven' (Fedora/RHEL) or "
        "'brew install openjdk@17 maven' (macOS), then retry"
    )


# --------------------------------------------------------------------------------------------------
# Jars
# --------------------------------------------------------------------------------------------------


def fetch_jars() -> Path:
    """Resolve the broker's jars once and return the ``libs`` folder holding them.

    The folder is ``$DISTRETTO_CACHE_DIR/kafka/<kafka.version>-<pom digest>/libs`` (default cache:
    ``<repo root>/.cache``): a change to the POM (a jar added) resolves a new set, and checkouts with
    the older POM keep theirs. A marker file records a complete download, so later calls return at
    once; concurrent callers are serialised with a file lock. Needs Maven (see :func:`ensure_java`).
    """
    root = repo_root()
    version = kafka_version(root / POM_RELPATH)
    digest = hashlib.sha256((root / POM_RELPATH).read_bytes()).hexdigest()[:12]
    base = cache_dir() / "kafka" / f"{version}-{digest}"
    libs = base / "libs"
    if (libs / COMPLETE_MARKER).is_file():
        return libs
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (libs / COMPLETE_MARKER).is_file():
            return libs
        ensure_java(need_maven=True)
        partial = base / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        cmd = [
            "mvn",
            "-q",
            "-B",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
            "-f",
            str(root / POM_RELPATH),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        jars = sorted(p.name for p in partial.glob("*.jar")) if partial.is_dir() else []
        if proc.returncode != 0 or not any(j.startswith("kafka_") for j in jars):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise KafkaRunnerError(f"mvn failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
        (partial / COMPLETE_MARKER).write_text("\n".join(jars) + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
    return libs


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _new_cluster_id() -> str:
    # Same as Kafka's Uuid.randomUuid().toString(): url-safe base64 of 16 random bytes, no padding,
    # never starting with '-' (it would be taken for a command-line flag).
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _run_coro(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from sync code, even if this thread already runs a loop."""

    async def runner() -> _T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(runner())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, runner()).result()


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64 * 1024))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


async def probe_broker(
    bootstrap_servers: str, request_timeout: float = 5.0, credentials: KafkaCredentials | None = None
) -> dict[str, Any] | None:
    """Ask the broker for cluster metadata; return it if at least one broker is listed, else None.

    Never raises for connection problems: an unreachable or not-yet-ready broker gives None.
    ``credentials`` default to the environment's (``KAFKA_SASL_USERNAME`` …).
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=max(1000, int(request_timeout * 1000)),
        client_id="distretto-kafka-probe",
        **(credentials or KafkaCredentials.from_env()).aiokafka(),
    )
    try:
        async with asyncio.timeout(request_timeout):
            await admin.start()
            info = await admin.describe_cluster()
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return info if info.get("brokers") else None


def _broker_answers(bootstrap_servers: str, timeout: float = 5.0, credentials: KafkaCredentials | None = None) -> bool:
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    if not _port_open(int(port), host or "127.0.0.1"):
        return False
    return _run_coro(lambda: probe_broker(bootstrap_servers, timeout, credentials)) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (nobody reaped it yet) counts as dead
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_kafka_pid(pid: int) -> bool:
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pidfile
    return b"kafka.Kafka" in cmdline


def _kill_group(pid: int, timeout: float, reap: Callable[[float], bool] | None = None) -> bool:
    """SIGTERM the process group led by ``pid``, wait, then SIGKILL. Returns True if it was graceful."""

    def wait(limit: float) -> bool:
        if reap is not None:
            return reap(limit)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return True
            time.sleep(0.1)
        return not _pid_alive(pid)

    def signal_group(sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    signal_group(signal.SIGTERM)
    if wait(timeout):
        signal_group(signal.SIGKILL)  # stragglers in the group, if any
        return True
    signal_group(signal.SIGKILL)
    wait(10.0)
    return False


# --------------------------------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------------------------------

_LIVE: set[EmbeddedKafka] = set()  # started here and not detached: stopped at interpreter exit


@atexit.register
def _stop_live_brokers() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop(timeout=10)


@dataclass(eq=False)
class EmbeddedKafka:
    """A single-node KRaft Kafka broker (combined broker+controller) running as a child JVM.

    ``port``/``controller_port`` default to free ports picked at construction. ``log_file``
    defaults to ``<data_dir>/server.log``. Use as a context manager, or call :meth:`start` and
    :meth:`stop`. A broker started by this process is stopped at interpreter exit unless
    :meth:`detach` was called.
    """

    data_dir: Path
    port: int | None = None
    controller_port: int | None = None
    heap: str = "512m"
    log_file: Path | None = None
    jvm_args: Sequence[str] = ()
    sasl: bool = True
    """SASL/SCRAM-SHA-512 listener with ACLs (the default); False: an open PLAINTEXT listener."""
    admin_password: str | None = None
    """The super user's password; None: ``$DISTRETTO_KAFKA_ADMIN_PASSWORD``, else the one kept in
    ``<data_dir>/admin-password``, else a new random one (kept there)."""
    reauth_ms: int | None = None
    """``connections.max.reauth.ms`` of the SASL listener; None: ``$DISTRETTO_KAFKA_REAUTH_MS``, else
    :data:`DEFAULT_REAUTH_MS`."""
    node_id: int = 1
    """This node's id in the KRaft quorum (1 for a single broker)."""
    quorum_voters: str | None = None
    """``controller.quorum.voters`` (``1@host:port,2@…``); None: this node alone."""
    cluster_id: str | None = None
    """The id the storage is formatted with; every node of a cluster shares one. None: a new one."""
    replication: int = 1
    """Replication factor of the internal topics (consumer offsets, transactions): the cluster's size."""
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _requested_ports: tuple[int | None, int | None] = field(default=(None, None), init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self._requested_ports = (self.port, self.controller_port)
        self._pick_ports()
        if self.log_file is None:
            self.log_file = self.data_dir / "server.log"
        if self.sasl and not self.admin_password:
            self.admin_password = (
                os.environ.get(ADMIN_PASSWORD_ENV) or read_admin_password(self.data_dir) or new_password()
            )
        if self.reauth_ms is None:
            self.reauth_ms = int(os.environ.get(REAUTH_MS_ENV) or DEFAULT_REAUTH_MS)
        if self.reauth_ms <= 0:
            raise KafkaRunnerError(f"{REAUTH_MS_ENV} must be a positive number of milliseconds")

    @property
    def credentials(self) -> KafkaCredentials:
        """The super user's client credentials (``PLAINTEXT`` without SASL)."""
        if not self.sasl:
            return KafkaCredentials()
        return KafkaCredentials("SASL_PLAINTEXT", ADMIN_USER, self.admin_password or "", "SCRAM-SHA-512")

    @property
    def _auto_ports(self) -> bool:
        return None in self._requested_ports

    def _pick_ports(self) -> None:
        taken = {p for p in (self.port, self.controller_port) if p is not None}
        free = [p for p in _free_ports(4) if p not in taken]
        if self.port is None:
            self.port = free.pop(0)
        if self.controller_port is None:
            self.controller_port = free.pop(0)

    # ---- properties -----------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:<port>"``, usable as aiokafka/FastStream ``bootstrap_servers``."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The JVM's pid (also its process-group id) while running, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def properties_file(self) -> Path:
        """Path of the generated ``server.properties``."""
        return self.data_dir / "server.properties"

    def is_running(self) -> bool:
        """True while the JVM started by :meth:`start` is alive."""
        return self.pid is not None

    # ---- configuration --------------------------------------------------------------------------

    def _listener_properties(self) -> dict[str, str]:
        if not self.sasl:
            return {
                "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "inter.broker.listener.name": "PLAINTEXT",
                "controller.listener.names": "CONTROLLER",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            }
        pw = self.admin_password or ""
        if '"' in pw or "\\" in pw:
            raise KafkaRunnerError("the Kafka admin password must not contain quotes or backslashes")
        scram = (
            f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN_USER}" password="{pw}";'
        )
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{ADMIN_USER}" password="{pw}" user_{ADMIN_USER}="{pw}";'
        )
        return {
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram,
            # Sessions end: a client re-authenticates within this time or is disconnected (a deleted
            # user's open connections do not outlive it).
            "connections.max.reauth.ms": str(self.reauth_ms),
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN_USER}",
        }

    def server_properties(self) -> dict[str, str]:
        """The broker configuration written to ``server.properties``."""
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum_voters or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            **self._listener_properties(),
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "3",
            "default.replication.factor": str(self.replication),
            "min.insync.replicas": str(min_insync_replicas(self.replication)),
            "offsets.topic.replication.factor": str(self.replication),
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": str(self.replication),
            "transaction.state.log.min.isr": str(min_insync_replicas(self.replication)),
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": str(self.replication),
            "share.coordinator.state.topic.min.isr": str(min_insync_replicas(self.replication)),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "4",
            "log.segment.bytes": str(16 * 1024 * 1024),
            "log.index.size.max.bytes": str(1024 * 1024),
            "log.retention.hours": "24",
            "log.retention.check.interval.ms": "60000",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.cleaner.threads": "1",
        }

    def _write_properties(self) -> None:
        lines = ["# Generated by distretto_dev.kafka_runner; rewritten at every start."]
        lines += [f"{k}={v}" for k, v in self.server_properties().items()]
        # owner-only: it holds the admin password (JAAS)
        fd = os.open(self.properties_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        if self.sasl and self.admin_password:
            write_admin_password(self.data_dir, self.admin_password)

    def _java_cmd(self, libs: Path, main_class: str, *args: str, heap: str | None = None) -> list[str]:
        cmd = ["java"]
        if heap:
            cmd += [f"-Xmx{heap}", f"-Xms{heap}"]
        cmd += [
            "-XX:+UseSerialGC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.data_dir}",
        ]
        log4j = repo_root() / LOG4J_RELPATH
        if log4j.is_file():
            cmd.append(f"-Dlog4j2.configurationFile={log4j}")
        cmd += list(self.jvm_args)
        cmd += ["-cp", f"{libs}{os.sep}*", main_class, *args]
        return cmd

    def _format_storage(self, libs: Path) -> None:
        logs = self.data_dir / "logs"
        if (logs / "meta.properties").is_file():
            return  # already formatted (persistent data dir)
        cmd = self._java_cmd(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            self.cluster_id or _new_cluster_id(),
            "--config",
            str(self.properties_file),
            "--ignore-formatted",
            *(
                ["--add-scram", f"SCRAM-SHA-512=[name={ADMIN_USER},password={self.admin_password}]"]
                if self.sasl
                else []
            ),
            heap=None,
        )
        # With a static controller.quorum.voters, Kafka 4.x rejects --standalone (that flag is for
        # dynamic quorums configured via controller.quorum.bootstrap.servers).
        cmd[1:1] = ["-XX:TieredStopAtLevel=1", "-Xshare:auto"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise KafkaRunnerError(
                f"formatting Kafka storage in {logs} failed (exit {proc.returncode}):\n"
                + (proc.stdout + proc.stderr).strip()
            )

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 90) -> EmbeddedKafka:
        """Format storage if needed, start the JVM and wait until the broker answers metadata.

        Raises :class:`KafkaRunnerError` with the last log lines if the JVM exits or ``timeout``
        seconds pass first. Returns ``self``.
        """
        if self.is_running():
            return self
        libs = fetch_jars()
        ensure_java(need_maven=False)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 3 if self._auto_ports else 1
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            busy = [p for p in (self.port, self.controller_port) if p is not None and _port_open(p)]
            if busy and (last or not self._auto_ports):
                raise KafkaRunnerError(f"port {busy[0]} on 127.0.0.1 is already in use")
            if not busy:
                try:
                    self._start_once(libs, timeout)
                    return self
                except KafkaRunnerError as exc:
                    if last or not self._auto_ports or "Address already in use" not in str(exc):
                        raise
            self.port, self.controller_port = self._requested_ports  # free ports were taken: re-pick
            self._pick_ports()
        raise KafkaRunnerError("could not find free ports")  # pragma: no cover

    def _start_once(self, libs: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._launch(libs)
        self._await_ready(deadline)

    def _launch(self, libs: Path) -> None:
        """Write the configuration, format the storage if new, and start the JVM (without waiting)."""
        assert self.log_file is not None
        formatted = (self.data_dir / "logs" / "meta.properties").is_file()
        if self.sasl and formatted and read_admin_password(self.data_dir) is None:
            raise KafkaRunnerError(
                f"{self.data_dir} was formatted before the broker required SASL: it holds no credential of the "
                f"super user. Delete {self.data_dir} (its topics go with it) or run `make clean`, then start again"
            )
        self._write_properties()
        self._format_storage(libs)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = self._java_cmd(libs, "kafka.Kafka", str(self.properties_file), heap=self.heap)
        log: IO[bytes]
        with open(self.log_file, "ab") as log:
            started = {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "level": "info",
                "service": "kafka",
                "logger": "distretto_dev.kafka_runner",
                "event": "starting broker",
                "node_id": self.node_id,
                "command": cmd,
            }
            log.write((json.dumps(started) + "\n").encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        _LIVE.add(self)

    def _await_ready(self, deadline: float) -> None:
        """Wait until this node answers a metadata request; stop it and raise past ``deadline``."""
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                _LIVE.discard(self)
                raise KafkaRunnerError(
                    f"Kafka exited with code {code} during startup; last lines of {self.log_file}:\n"
                    + _tail(self.log_file)
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise KafkaRunnerError(
                    f"Kafka did not answer on {self.bootstrap_servers} within the start timeout; "
                    f"last lines of {self.log_file}:\n" + _tail(self.log_file)
                )
            if _broker_answers(self.bootstrap_servers, min(5.0, max(1.0, remaining)), self.credentials):
                return
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the JVM (a crash, for the tests that must survive one); no-op if stopped."""
        proc = self._proc
        self._proc = None
        _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the broker's process group, wait up to ``timeout`` s, then SIGKILL; no-op if stopped."""
        proc = self._proc
        self._proc = None
        _LIVE.discard(self)
        if proc is None:
            return
        if proc.poll() is not None:
            return

        def reap(limit: float) -> bool:
            try:
                proc.wait(timeout=limit)
                return True
            except subprocess.TimeoutExpired:
                return False

        _kill_group(proc.pid, timeout, reap)

    def detach(self) -> int:
        """Leave the JVM running past this process (no stop at exit); return its pid."""
        pid = self.pid
        if pid is None:
            raise KafkaRunnerError("broker is not running")
        _LIVE.discard(self)
        self._proc = None
        return pid

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(eq=False)
class EmbeddedKafkaCluster:
    """Several KRaft nodes on this machine, each a combined broker+controller: one cluster id, one quorum.

    Node ``i`` (1-based) keeps its data in ``<data_dir>/node-<i>``, listens for clients on
    ``ports[i-1]`` and for the quorum on ``controller_ports[i-1]`` (free ports by default). The nodes
    share the super user's password, the SASL/SCRAM listener and the ACL authoriser of a single
    broker; the internal topics are replicated on every node (at most three) and
    ``min.insync.replicas`` is one less (two of three). The catalogue's topics get the same
    (:func:`distretto_shared.topics.ensure_topics` counts the brokers). The JVMs start together —
    a node answers only once the quorum has a leader — and each is small (``heap``).
    """

    data_dir: Path
    nodes: int = 3
    ports: Sequence[int] | None = None
    controller_ports: Sequence[int] | None = None
    heap: str = "256m"
    jvm_args: Sequence[str] = ()
    admin_password: str | None = None
    members: list[EmbeddedKafka] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise KafkaRunnerError("a cluster needs at least one node")
        self.data_dir = Path(self.data_dir).resolve()
        free = _free_ports(2 * self.nodes)
        ports = list(self.ports or free[: self.nodes])
        controllers = list(self.controller_ports or free[self.nodes :])
        if len(ports) != self.nodes or len(controllers) != self.nodes:
            raise KafkaRunnerError(f"give {self.nodes} client ports and {self.nodes} controller ports")
        first = self.data_dir / "node-1"
        password = (
            self.admin_password or os.environ.get(ADMIN_PASSWORD_ENV) or read_admin_password(first) or new_password()
        )
        cluster_id = _read_cluster_id(first) or _new_cluster_id()
        voters = ",".join(f"{i + 1}@127.0.0.1:{controllers[i]}" for i in range(self.nodes))
        self.members = [
            EmbeddedKafka(
                data_dir=self.data_dir / f"node-{i + 1}",
                port=ports[i],
                controller_port=controllers[i],
                heap=self.heap,
                jvm_args=tuple(self.jvm_args),
                admin_password=password,
                node_id=i + 1,
                quorum_voters=voters,
                cluster_id=cluster_id,
                replication=min(3, self.nodes),
            )
            for i in range(self.nodes)
        ]

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address, comma-separated."""
        return ",".join(m.bootstrap_servers for m in self.members)

    @property
    def credentials(self) -> KafkaCredentials:
        """The super user's client credentials."""
        return self.members[0].credentials

    def node(self, node_id: int) -> EmbeddedKafka:
        """The member with KRaft id ``node_id`` (1-based)."""
        return self.members[node_id - 1]

    def start(self, timeout: float = 120) -> EmbeddedKafkaCluster:
        """Start every node that is not running and wait until all of them are in the cluster."""
        libs = fetch_jars()
        ensure_java(need_maven=False)
        deadline = time.monotonic() + timeout
        waiting = [m for m in self.members if not m.is_running()]
        busy = [p for m in waiting for p in (m.port, m.controller_port) if p is not None and _port_open(p)]
        if busy:
            raise KafkaRunnerError(f"port {busy[0]} on 127.0.0.1 is already in use")
        try:
            for member in waiting:
                member.data_dir.mkdir(parents=True, exist_ok=True)
                member._launch(libs)
            for member in waiting:
                member._await_ready(deadline)
            self.wait_brokers(len(self.members), max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, node_id: int, timeout: float = 90) -> float:
        """(Re)start one node of a running cluster; return the seconds until it answered."""
        t0 = time.monotonic()
        member = self.node(node_id)
        member._launch(fetch_jars())
        member._await_ready(t0 + timeout)
        return time.monotonic() - t0

    def wait_brokers(self, count: int, timeout: float = 60) -> None:
        """Wait until the cluster's metadata lists ``count`` brokers."""
        deadline = time.monotonic() + timeout
        while True:
            info = _run_coro(lambda: probe_broker(self.bootstrap_servers, 5.0, self.credentials))
            if info is not None and len(info.get("brokers", ())) >= count:
                return
            if time.monotonic() > deadline:
                raise KafkaRunnerError(f"the cluster did not list {count} brokers within {timeout:.0f}s")
            time.sleep(0.3)

    def pids(self) -> dict[int, int]:
        """Node id → pid of every running node."""
        return {m.node_id: m.pid for m in self.members if m.pid is not None}

    def stop(self, timeout: float = 30) -> None:
        """Stop every node together (SIGTERM, then SIGKILL): one by one, the last would wait for a quorum."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.members)) as pool:
            for future in [pool.submit(m.stop, timeout) for m in self.members]:
                future.result()

    def detach(self) -> dict[int, int]:
        """Leave every node running past this process; return node id → pid."""
        return {m.node_id: m.detach() for m in self.members}

    def __enter__(self) -> EmbeddedKafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_cluster_id(data_dir: Path) -> str | None:
    try:
        text = (data_dir / "logs" / "meta.properties").read_text()
    except OSError:
        return None
    match = re.search(r"^cluster\.id=(\S+)", text, re.M)
    return match.group(1) if match else None


@contextlib.contextmanager
def session_broker(tmp_root: Path) -> Iterator[str]:
    """Yield a bootstrap string for a test session.

    If ``KAFKA_BOOTSTRAP_SERVERS`` is set, yields it and starts nothing. Otherwise starts a
    throwaway :class:`EmbeddedKafka` on free ports under ``tmp_root/kafka`` and stops it on exit.
    Typical use, in ``conftest.py``::

        @pytest.fixture(scope="session")
        def kafka_bootstrap(tmp_path_factory):
            with session_broker(tmp_path_factory.mktemp("kafka")) as bootstrap:
                yield bootstrap
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    # C1-only JIT: ~1s faster start, plenty for test traffic (benchmarks use the full JIT).
    broker = EmbeddedKafka(data_dir=Path(tmp_root) / "kafka", jvm_args=("-XX:TieredStopAtLevel=1",))
    _exit_on_sigterm()
    with broker:
        # The session's clients (test helpers, the processes tests start) act as the super user; tests
        # of least rights make their own users (distretto_shared.kafka_security).
        os.environ.update(broker.credentials.env())
        yield broker.bootstrap_servers


def _exit_on_sigterm() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit, so `finally` blocks and atexit stop the broker.

    Python's default SIGTERM action ends the process at once, without cleanup: a test run
    or benchmark stopped by `timeout` (or CI) would leave its broker's JVM behind.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def read_admin_password(data_dir: Path) -> str | None:
    """The super user's password kept in ``<data_dir>/admin-password``, if any."""
    try:
        return (Path(data_dir) / ADMIN_PASSWORD_FILE).read_text().strip() or None
    except OSError:
        return None


def write_admin_password(data_dir: Path, password: str) -> None:
    """Keep the super user's password in ``<data_dir>/admin-password`` (owner-only)."""
    path = Path(data_dir) / ADMIN_PASSWORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")


def _admin_credentials(data_dir: Path) -> KafkaCredentials:
    password = os.environ.get(ADMIN_PASSWORD_ENV) or read_admin_password(data_dir)
    if password:
        return KafkaCredentials("SASL_PLAINTEXT", ADMIN_USER, password)
    return KafkaCredentials.from_env()


def _read_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / PIDFILE_NAME).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _configured_bootstrap(data_dir: Path, fallback_port: int) -> str:
    try:
        text = (data_dir / "server.properties").read_text()
        match = re.search(r"^advertised\.listeners=(?:SASL_)?PLAINTEXT://([^,\s]+)", text, re.M)
        if match:
            return match.group(1)
    except OSError:
        pass
    return f"127.0.0.1:{fallback_port}"


def _say(msg: str) -> None:
    print(f"distretto-kafka: {msg}", flush=True)


def _cmd_fetch(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    libs = fetch_jars()
    _say(f"{len(list(libs.glob('*.jar')))} jars in {libs} ({time.monotonic() - t0:.1f}s)")
    return 0


def _node_dirs(data_dir: Path) -> list[Path]:
    """The folders of a cluster's nodes under ``data_dir`` (``node-1`` …), or ``[data_dir]`` for one broker."""
    nodes = sorted(
        (p for p in data_dir.glob("node-*") if p.is_dir() and p.name[5:].isdigit()), key=lambda p: int(p.name[5:])
    )
    return nodes or [data_dir]


def _cluster_for(args: argparse.Namespace, data_dir: Path) -> EmbeddedKafkaCluster:
    # Node i (0-based) listens on port + 2i for clients and port + 2i + 1 for the quorum.
    return EmbeddedKafkaCluster(
        data_dir=data_dir,
        nodes=args.nodes,
        ports=[args.port + 2 * i for i in range(args.nodes)],
        controller_ports=[args.port + 2 * i + 1 for i in range(args.nodes)],
        heap=args.heap or "256m",
    )


def _cmd_start(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    if args.nodes > 1:
        return _cmd_start_cluster(args, data_dir)
    pid = _read_pid(data_dir)
    if pid is not None and _is_kafka_pid(pid):
        bootstrap = _configured_bootstrap(data_dir, args.port)
        deadline = time.monotonic() + args.timeout  # it may still be starting
        while not _broker_answers(bootstrap, credentials=_admin_credentials(data_dir)):
            if time.monotonic() > deadline or not _is_kafka_pid(pid):
                _say(f"pid {pid} is alive but {bootstrap} does not answer; try 'distretto-kafka stop'")
                return 1
            time.sleep(0.5)
        _say(f"already running (pid {pid}) at {bootstrap}")
        return 0
    (data_dir / PIDFILE_NAME).unlink(missing_ok=True)
    broker = EmbeddedKafka(
        data_dir=data_dir,
        port=args.port,
        controller_port=args.controller_port,
        heap=args.heap or "512m",
        log_file=args.log_file,
    )
    t0 = time.monotonic()
    try:
        broker.start(timeout=args.timeout)
    except KafkaRunnerError as exc:
        _say(f"start failed: {exc}")
        return 1
    pid = broker.detach()
    (data_dir / PIDFILE_NAME).write_text(f"{pid}\n")
    _say(f"started (pid {pid}) at {broker.bootstrap_servers} in {time.monotonic() - t0:.1f}s; log {broker.log_file}")
    _say(f"SASL/SCRAM-SHA-512 super user '{ADMIN_USER}'; its password is in {data_dir / ADMIN_PASSWORD_FILE}")
    return 0


def _cmd_start_cluster(args: argparse.Namespace, data_dir: Path) -> int:
    running = [d for d in _node_dirs(data_dir) if (pid := _read_pid(d)) is not None and _is_kafka_pid(pid)]
    if running:
        _say(f"already running ({len(running)} nodes) in {data_dir}; 'distretto-kafka status' tells more")
        return 0
    cluster = _cluster_for(args, data_dir)
    t0 = time.monotonic()
    try:
        cluster.start(timeout=args.timeout)
    except KafkaRunnerError as exc:
        _say(f"start failed: {exc}")
        return 1
    for node_id, pid in cluster.detach().items():
        (cluster.node(node_id).data_dir / PIDFILE_NAME).write_text(f"{pid}\n")
    _say(
        f"started {args.nodes} nodes at {cluster.bootstrap_servers} in {time.monotonic() - t0:.1f}s "
        f"(KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap_servers}); logs {data_dir}/node-*/server.log"
    )
    _say(
        f"SASL/SCRAM-SHA-512 super user '{ADMIN_USER}'; its password is in {data_dir / 'node-1' / ADMIN_PASSWORD_FILE}"
    )
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    nodes = _node_dirs(args.data_dir.resolve())
    # Together: stopped one by one, the last node of a cluster would wait for a quorum that is gone.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        codes = pool.map(lambda d: _cmd_stop_one(argparse.Namespace(**{**vars(args), "data_dir": d})), nodes)
        return max(codes)


def _cmd_stop_one(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    pidfile = data_dir / PIDFILE_NAME
    pid = _read_pid(data_dir)
    if pid is None or not _is_kafka_pid(pid):
        pidfile.unlink(missing_ok=True)
        _say("not running")
        return 0
    t0 = time.monotonic()
    graceful = _kill_group(pid, args.timeout)
    pidfile.unlink(missing_ok=True)
    how = "stopped" if graceful else "killed (SIGKILL after timeout)"
    _say(f"{how} (pid {pid}) in {time.monotonic() - t0:.1f}s")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    code = 0
    for node_dir in _node_dirs(args.data_dir.resolve()):
        code = max(code, _cmd_status_one(argparse.Namespace(**{**vars(args), "data_dir": node_dir})))
    return code


def _cmd_status_one(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    pid = _read_pid(data_dir)
    bootstrap = _configured_bootstrap(data_dir, args.port)
    if pid is not None and _is_kafka_pid(pid):
        if _broker_answers(bootstrap, credentials=_admin_credentials(data_dir)):
            _say(f"running (pid {pid}) at {bootstrap}")
            return 0
        _say(f"pid {pid} is alive but {bootstrap} does not answer (starting or wedged)")
        return 1
    _say("not running")
    return 1


def _cmd_run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    for node_dir in _node_dirs(data_dir):
        pid = _read_pid(node_dir)
        if pid is not None and _is_kafka_pid(pid):
            _say(f"already running (pid {pid}) for {node_dir}; use 'distretto-kafka stop' first")
            return 1
    broker: EmbeddedKafka | EmbeddedKafkaCluster
    if args.nodes > 1:
        broker = _cluster_for(args, data_dir)
    else:
        broker = EmbeddedKafka(
            data_dir=data_dir,
            port=args.port,
            controller_port=args.controller_port,
            heap=args.heap or "512m",
            log_file=args.log_file,
        )
    stop_requested = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    members = broker.members if isinstance(broker, EmbeddedKafkaCluster) else [broker]
    try:
        broker.start(timeout=args.timeout)
        for member in members:  # so 'status' and 'stop' see them
            (member.data_dir / PIDFILE_NAME).write_text(f"{member.pid}\n")
        _say(
            f"running (pids {', '.join(str(m.pid) for m in members)}) at {broker.bootstrap_servers} "
            f"(started in {time.monotonic() - t0:.1f}s); Ctrl-C to stop; "
            f"logs {', '.join(str(m.log_file) for m in members)}"
        )
        while not stop_requested and all(m.is_running() for m in members):
            time.sleep(0.5)
        if not stop_requested:
            dead = next(m for m in members if not m.is_running())
            _say(f"broker exited unexpectedly; last lines of {dead.log_file}:\n{_tail(dead.log_file)}")
            return 1
    except KafkaRunnerError as exc:
        _say(f"start failed: {exc}")
        return 1
    finally:
        broker.stop()
        for member in members:
            (member.data_dir / PIDFILE_NAME).unlink(missing_ok=True)
        for s, h in old.items():
            signal.signal(s, h)
    _say("stopped")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distretto-kafka",
        description="Embedded Kafka (KRaft) for Distretto: one broker, or a cluster (--nodes 3).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="resolve the Kafka jars into the cache (needs Maven)").set_defaults(func=_cmd_fetch)
    for name, func, help_ in (
        ("start", _cmd_start, "start a detached broker (idempotent); writes a pidfile in the data dir"),
        ("stop", _cmd_stop, "stop the detached broker (ok if not running)"),
        ("status", _cmd_status, "exit 0 if the broker runs and answers, else 1"),
        ("run", _cmd_run, "run a broker in the foreground until Ctrl-C/SIGTERM"),
    ):
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        p.add_argument("--data-dir", type=Path, default=None, help="default: <repo>/var/kafka")
        p.add_argument("--port", type=int, default=DEFAULT_PORT)
        if name in ("start", "run"):
            p.add_argument("--controller-port", type=int, default=DEFAULT_CONTROLLER_PORT)
            p.add_argument(
                "--nodes",
                type=int,
                default=1,
                choices=range(1, 10),
                metavar="N",
                help="a cluster of N combined broker+controller nodes in <data-dir>/node-<i>, node i on ports "
                "--port+2(i-1) (clients) and --port+2(i-1)+1 (quorum); topics replicated on min(N, 3) brokers",
            )
            p.add_argument(
                "--heap", default=None, help="JVM -Xmx/-Xms (default 512m for one broker, 256m a node of a cluster)"
            )
            p.add_argument("--log-file", type=Path, default=None, help="default: <data-dir>/server.log")
            p.add_argument("--timeout", type=float, default=90.0, help="readiness timeout, seconds")
        if name == "stop":
            p.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``distretto-kafka`` / ``python -m distretto_dev.kafka_runner``."""
    args = _build_parser().parse_args(argv)
    try:
        if getattr(args, "data_dir", "unset") is None:
            args.data_dir = default_data_dir()
        code: int = args.func(args)
    except KafkaRunnerError as exc:
        _say(f"error: {exc}")
        code = 2
    return code


if __name__ == "__main__":
    sys.exit(main())
