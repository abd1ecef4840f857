"""A three-node Kafka cluster and two instances of every service on PostgreSQL (``make test-cluster``).

The cluster is :class:`distretto_dev.kafka_runner.EmbeddedKafkaCluster` (three combined
broker+controller nodes, SASL/SCRAM and ACLs as the single broker of ``make test``). Each service
gets a schema of its own in the PostgreSQL database of ``DISTRETTO_TEST_POSTGRES_URL``; both of
its instances use it, as instances on two machines would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from distretto_dev.kafka_runner import EmbeddedKafkaCluster
from distretto_dev.testing import POSTGRES_ENV, DatabaseTarget, ServiceProcess, drop_schema, free_port, wait_for

SERVICES = ("membership", "projects", "newsletter", "matchmaking", "partners")
INSTANCES = 2


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.fail(f"the cluster test runs on PostgreSQL: set {POSTGRES_ENV} (make test-cluster does)")
    return url


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafkaCluster]:
    """Three KRaft nodes on free ports; the test's clients and processes act as the super user."""
    cluster = EmbeddedKafkaCluster(
        data_dir=tmp_path_factory.mktemp("kafka-cluster"), nodes=3, jvm_args=("-XX:TieredStopAtLevel=1",)
    )
    with cluster:
        saved = {k: os.environ.get(k) for k in (*cluster.credentials.env(), "KAFKA_BOOTSTRAP_SERVERS")}
        os.environ.update(cluster.credentials.env())
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = cluster.bootstrap_servers
        try:
            yield cluster
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@dataclass
class Platform:
    cluster: EmbeddedKafkaCluster
    catcher: str
    prefix: str
    databases: dict[str, DatabaseTarget]
    instances: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    logs: Path = Path()


async def ready(url: str) -> dict | None:
    """The instance's ``/readyz`` body when it is ready (database, broker, relay), else None."""
    try:
        async with httpx.AsyncClient() as client:
            r = await client.get(url + "/readyz", timeout=5)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


@pytest.fixture(scope="module")
async def platform(
    kafka_cluster: EmbeddedKafkaCluster, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    root = tmp_path_factory.mktemp("cluster-platform")
    run = uuid.uuid4().hex[:8]
    prefix = f"cl{run}."
    databases = {s: DatabaseTarget("postgresql", postgres_url, f"cl_{run}_{s}") for s in SERVICES}
    smtp_port, catcher_port = free_port(), free_port()
    ports = {s: [free_port() for _ in range(INSTANCES)] for s in SERVICES}
    catcher_args = ["--smtp-port", str(smtp_port), "--http-port", str(catcher_port), "--folder", ""]
    catcher = subprocess.Popen(
        [sys.executable, "-m", "distretto_dev.catcher", *catcher_args],
        env=os.environ.copy(),
        stdout=(root / "catcher.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    common = {"DISTRETTO_TOPIC_PREFIX": prefix, "KAFKA_BOOTSTRAP_SERVERS": kafka_cluster.bootstrap_servers}
    platform = Platform(kafka_cluster, f"http://127.0.0.1:{catcher_port}", prefix, databases, logs=root)

    def instance(service: str, n: int, extra: dict[str, str]) -> ServiceProcess:
        prefix_env = service.upper()
        env = {
            **common,
            **databases[service].env(prefix_env),
            "DISTRETTO_DATA_DIR": str(root / f"{service}-{n + 1}"),
            f"{prefix_env}_RELAY_POLL_INTERVAL": "0.2",
            **extra,
        }
        return ServiceProcess(service, port=ports[service][n], env=env, log_path=root / f"{service}-{n + 1}.log")

    # Newsletter instances read contact details from the membership instance the test never kills.
    membership_url = f"http://127.0.0.1:{ports['membership'][1]}"
    extra = {
        "membership": {"MEMBERSHIP_FIGURES_INTERVAL": "1"},
        "newsletter": {
            "NEWSLETTER_SMTP_SERVERS": f"127.0.0.1:{smtp_port}",
            "NEWSLETTER_MEMBERSHIP_URL": membership_url,
            "NEWSLETTER_LINK_BASE_URL": f"http://127.0.0.1:{ports['newsletter'][0]}",
        },
    }
    procs: list[ServiceProcess] = []
    try:
        # membership-1 first, so its relay holds the outbox lock: the test kills that instance.
        first = instance("membership", 0, extra.get("membership", {}))
        procs.append(first)
        await first.start(timeout=120)
        await wait_for(lambda: ready(first.url), timeout=120, what="membership-1 ready")
        platform.instances["membership"] = [first]
        rest = []
        for service in SERVICES:
            for n in range(INSTANCES):
                if (service, n) == ("membership", 0):
                    continue
                proc = instance(service, n, extra.get(service, {}))
                platform.instances.setdefault(service, []).append(proc)
                procs.append(proc)
                rest.append(proc)
        await asyncio.gather(*(p.start(timeout=120) for p in rest))
        for proc in procs:
            await wait_for(lambda p=proc: ready(p.url), timeout=120, what=f"{proc.module} on {proc.port} ready")
        yield platform
    finally:
        for proc in reversed(procs):
            proc.stop()
        catcher.terminate()
        catcher.wait(10)
        for target in databases.values():
            assert target.schema
            await drop_schema(postgres_url, target.schema)
