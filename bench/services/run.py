"""Request-path benchmark: each service's HTTP app beside a bare FastAPI + SQLAlchemy Core app.

    uv run python bench/services/run.py [--services membership,projects,newsletter,matchmaking]
        [--backends sqlite,postgres] [--clients 1,32] [--duration 3] [--hog 0] [--json]
        [--matchmaking-encoder process|thread]

Per service, a representative read and write:

  membership   read  GET /organisations/{id}           write POST /organisations + POST …/{id}/approve
  projects     read  GET /projects/{id}                write POST /projects + PATCH …/{id} (status)
  newsletter   read  GET /campaigns/{id}               write POST /campaigns + PATCH …/{id}
  matchmaking  read  GET /organisations/{id} (profile) write POST /opportunities + PATCH …/{id}

Processes (all on this machine):
  service  ``python -m <service> serve`` (uvicorn, as deployed): every request carries a real
           ``X-Distretto-Identity`` credential signed by a gateway key the service trusts (one
           principal per client, as the gateway's cached credentials are); logs at INFO, JSON
  bare     ``bench/services/bare.py``: the aggregate's SQL on the same database (the yardstick)
  broker   one Kafka broker (KRaft, SASL/SCRAM) the services' relays publish to, unless
           ``KAFKA_BOOTSTRAP_SERVERS`` names one (topics get a prefix unique to the run, and to each
           service's measurement in it: no service consumes the events another's measurement wrote)
  load     this script, while it measures: asyncio + uvloop, raw sockets, N keep-alive
           connections, one request in flight per connection, latency per request
  hog      with ``--hog N``: N busy-loop processes, the "busy machine" of the comparison

Matchmaking computes the vectors of what was written in the background, by default in a child
process at a lower priority (``--matchmaking-encoder thread``: in the serving process, as before);
the header says which, and ``server CPU`` counts the service's children too (the serving process
alone is printed beside it when they differ). Each of its measurements starts once its index
has caught up (``GET /index``), the vectors of the last one's writes done.

Both apps are measured in the same run, one after the other on the same database, and the ratio
service / bare is printed beside the figures. ``server CPU`` is the CPU time the measured process
spent per request (from /proc): steadier than requests/s on a shared machine.
PostgreSQL: ``DISTRETTO_TEST_POSTGRES_URL`` (a fresh schema per service and run, dropped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVICES = ("membership", "projects", "newsletter", "matchmaking")
POSTGRES_ENV = "DISTRETTO_TEST_POSTGRES_URL"


# --------------------------------------------------------------------------------------------------
# the load generator (run in this process, which does nothing else meanwhile)
# --------------------------------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    body: Any = None


def _request(call: Call, host: str, headers: dict[str, str], ident: str | None, n: int) -> bytes:
    path = call.path.replace("{id}", ident or "")
    lines = [f"{call.method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    body = b""
    if call.body is not None:
        body = json.dumps(call.body).replace("{n}", str(n)).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _client(
    number: int,
    spec: dict[str, Any],
    deadline: float,
    warmup_until: float,
    latencies: list[float],
    errors: list[int],
    reasons: set[str],
) -> None:
    host, port = spec["host"], spec["port"]
    headers = spec["headers"][number % len(spec["headers"])]
    reads = [Call("GET", p) for p in spec.get("read_paths", [])]
    create = Call(**spec["create"]) if spec.get("create") else None
    then = Call(**spec["then"]) if spec.get("then") else None
    kind = spec["kind"]
    rng = random.Random(number)
    counter = number * 10_000_000
    connection: list[Any] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not connection:
            reader, writer = await asyncio.open_connection(host, port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection[:] = [reader, writer]
        return connection[0], connection[1]

    async def exchange(request: bytes) -> tuple[int, bytes]:
        start = time.perf_counter()
        for attempt in (1, 2):
            reused = bool(connection)
            try:
                reader, writer = await connect()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                break
            except (OSError, asyncio.IncompleteReadError) as exc:
                if connection:
                    connection[1].close()
                    connection.clear()
                if attempt == 1 and reused:
                    continue  # a kept-alive connection the server had closed: once more, as HTTP clients do
                errors.append(0)  # the server dropped a fresh connection: an error (status 0)
                reasons.add(repr(exc))
                return 0, b""
        end = time.perf_counter()
        if status >= 400:
            errors.append(status)
        elif start >= warmup_until:
            latencies.append(end - start)
        return status, body

    step = 0
    try:
        # until the deadline, and on until something was measured (a very busy machine)
        while (now := time.perf_counter()) < deadline or (not latencies and now < deadline + 120):
            step += 1
            counter += 1
            if kind == "read" or (kind == "mixed" and step % 5):
                await exchange(_request(rng.choice(reads), host, headers, None, counter))
                continue
            assert create is not None and then is not None
            status, body = await exchange(_request(create, host, headers, None, counter))
            if status != 201:
                continue
            await exchange(_request(then, host, headers, str(json.loads(body)["id"]), counter))
    finally:
        if connection:
            connection[1].close()


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    reasons: set[str] = set()
    now = time.perf_counter()
    warmup_until = now + spec["warmup"]
    deadline = warmup_until + spec["duration"]
    await asyncio.gather(
        *(_client(i, spec, deadline, warmup_until, latencies, errors, reasons) for i in range(spec["clients"]))
    )
    measured = time.perf_counter() - warmup_until
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": len(errors),
        "error_statuses": sorted(set(errors))[:5],
        "connection_errors": sorted(reasons)[:3],
        "rps": n / measured,
        "p50_ms": latencies[n // 2] * 1000 if n else None,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else None,
        "mean_ms": statistics.fmean(latencies) * 1000 if n else None,
    }


# --------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------

CHILDREN: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with suppress(ValueError):
        CHILDREN.remove(proc)


def stop_all() -> None:
    for proc in reversed(list(CHILDREN)):
        stop(proc)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path | None, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def cpu_seconds(pid: int, descendants: bool = True) -> float:
    """CPU time (user + system) of a process and (by default) its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            if not descendants:
                continue
            for task in Path(f"/proc/{p}/task").iterdir():
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


def hog() -> None:
    """A busy loop (the CPU hog of ``--hog``)."""
    x = 0
    while True:
        x += 1


# --------------------------------------------------------------------------------------------------
# databases
# --------------------------------------------------------------------------------------------------


@dataclass
class Target:
    backend: str
    url: str
    schema: str | None = None

    def env(self, prefix: str) -> dict[str, str]:
        env = {f"{prefix}_DATABASE_URL": self.url}
        if self.schema:
            env[f"{prefix}_DATABASE_SCHEMA"] = self.schema
        return env


async def _pg(url: str, statement: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextmanager
def database(backend: str, service: str, tmp: Path) -> Iterator[Target]:
    if backend == "sqlite":
        yield Target("sqlite", f"sqlite+aiosqlite:///{tmp / f'{service}-{uuid.uuid4().hex[:6]}.db'}")
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        raise SystemExit(f"PostgreSQL: set {POSTGRES_ENV} (or run with --backends sqlite)")
    schema = f"bench_{service}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg(url, f'CREATE SCHEMA "{schema}"'))
    try:
        yield Target("postgres", url, schema)
    finally:
        asyncio.run(_pg(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


# --------------------------------------------------------------------------------------------------
# per-service scenarios
# --------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    read_paths: list[str]
    create: dict[str, Any]
    then: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def _post(client: Any, path: str, body: Any) -> Any:
    response = client.post(path, json=body)
    if response.status_code != 201:
        raise RuntimeError(f"seeding {path}: {response.status_code} {response.text[:300]}")
    return response.json()


def seed(service: str, url: str, headers: dict[str, str], target: Target, size: int) -> Scenario:
    """Rows to read (through the service's API; matchmaking's profiles, a read model, in SQL)."""
    import httpx

    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        if service == "membership":
            ids = [
                _post(client, "/organisations", {"name": f"Seed {i} Srl", "kind": "company", "sectors": ["pharma"]})[
                    "id"
                ]
                for i in range(size)
            ]
            return Scenario(
                [f"/organisations/{i}" for i in ids],
                {
                    "method": "POST",
                    "path": "/organisations",
                    "body": {"name": "Bench {n} Srl", "kind": "company", "sectors": ["pharma"]},
                },
                {"method": "POST", "path": "/organisations/{id}/approve"},
            )
        if service == "projects":
            ids = [
                _post(client, "/projects", {"acronym": f"SEED{i}", "title": f"Seed project {i}"})["id"]
                for i in range(size)
            ]
            return Scenario(
                [f"/projects/{i}" for i in ids],
                {"method": "POST", "path": "/projects", "body": {"acronym": "B{n}", "title": "Bench project {n}"}},
                {"method": "PATCH", "path": "/projects/{id}", "body": {"status": "signed"}},
            )
        if service == "newsletter":
            template = _post(
                client,
                "/templates",
                {"name": "Bench", "subject": "Bench", "body_html": "<p>Ciao</p>", "body_text": "Ciao"},
            )["id"]
            mailing_list = _post(client, "/lists", {"slug": "bench", "name": "Bench"})["id"]
            campaign = {"name": "Seed", "subject": "Notizie", "template_id": template, "lists": [mailing_list]}
            ids = [_post(client, "/campaigns", campaign)["id"] for _ in range(size)]
            return Scenario(
                [f"/campaigns/{i}" for i in ids],
                {"method": "POST", "path": "/campaigns", "body": {**campaign, "name": "Bench {n}"}},
                {"method": "PATCH", "path": "/campaigns/{id}", "body": {"name": "Bench {n} bis"}},
            )
        if service == "matchmaking":
            ids = [str(uuid.uuid4()) for _ in range(size)]
            asyncio.run(_seed_profiles(target, ids))
            return Scenario(
                [f"/organisations/{i}" for i in ids],
                {
                    "method": "POST",
                    "path": "/opportunities",
                    "body": {
                        "title": "Bench offer {n}",
                        "opportunity_type": "technology_offer",
                        "owner_organisation_id": ids[0],
                    },
                },
                {"method": "PATCH", "path": "/opportunities/{id}", "body": {"title": "Bench offer {n} bis"}},
            )
    raise SystemExit(f"unknown service {service}")


async def _seed_profiles(target: Target, ids: list[str]) -> None:
    """Competence profiles as matchmaking's projection of membership's events writes them."""
    from datetime import UTC, datetime

    from sqlalchemy import MetaData
    from sqlalchemy.ext.asyncio import create_async_engine

    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if target.backend == "sqlite" else {}
    if target.schema:
        kwargs["connect_args"] = {"server_settings": {"search_path": target.schema}}
    engine = create_async_engine(target.url, **kwargs)
    try:
        metadata = MetaData()
        async with engine.connect() as conn:
            await conn.run_sync(lambda sync: metadata.reflect(sync, only=["organisation"]))
        # SQLite: a transaction whose first statement writes waits for the lock (one that read first
        # would fail at once if the service wrote in between)
        async with engine.begin() as conn:
            await conn.execute(
                metadata.tables["organisation"].insert(),
                [
                    {
                        "organisation_id": i,
                        "name": f"Seed {n} Srl",
                        "kind": "company",
                        "status": "active",
                        "sectors": ["pharma"],
                        "country": "IT",
                        "description": "Diagnostica molecolare e biobanche",
                        "competences": ["genomica", "bioinformatica"],
                        "keywords": ["diagnostica"],
                        "updated_at": datetime.now(UTC),
                    }
                    for n, i in enumerate(ids)
                ],
            )
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------------------------------
# where the time goes (py-spy)
# --------------------------------------------------------------------------------------------------

CATEGORIES = (
    ("identity (JWT verify)", ("distretto_shared/identity.py", "/jwt/")),
    ("access log + structlog", ("structlog/", "distretto_shared/logging.py", "logging/__init__.py")),
    ("request metrics", ("prometheus_client/",)),
    ("tracing", ("distretto_shared/tracing.py", "opentelemetry/")),
    ("outbox relay", ("distretto_shared/outbox.py",)),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("sqlmodel", ("sqlmodel/",)),
    ("database driver", ("aiosqlite/", "asyncpg/", "sqlite3/")),
    ("FastAPI routing + dependencies", ("fastapi/routing.py", "fastapi/dependencies/")),
    ("FastAPI response encoding", ("fastapi/encoders.py",)),
    ("uvicorn + HTTP parsing", ("uvicorn/",)),
    ("Kafka client", ("aiokafka/", "faststream/")),
)
"""Inclusive shares: a sample counts for every category one of its frames belongs to."""


def profile_summary(path: Path) -> dict[str, float]:
    """Share of py-spy's samples (``--format raw``: folded stacks) spent in each category."""
    totals: dict[str, int] = {name: 0 for name, _ in CATEGORIES}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        for name, needles in CATEGORIES:
            if any(n in stack for n in needles):
                totals[name] += count
    return {name: n / samples for name, n in totals.items()} if samples else {}


# --------------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------------


def warm_up(url: str, headers: dict[str, str], scenario: Scenario) -> None:
    """One write through the API before any measurement: what a service loads on its first use
    (matchmaking's language model) is loaded before the clock runs, as in a service up for a while."""
    import httpx

    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        body = json.loads(json.dumps(scenario.create["body"]).replace("{n}", "0"))
        created = client.request(scenario.create["method"], scenario.create["path"], json=body)
        created.raise_for_status()
        then = scenario.then
        then_body = json.loads(json.dumps(then["body"]).replace("{n}", "0")) if then.get("body") else None
        path = then["path"].replace("{id}", str(created.json()["id"]))
        client.request(then["method"], path, json=then_body).raise_for_status()


def settle(service: str, url: str, headers: dict[str, str], timeout: float = 180.0) -> None:
    """Matchmaking embeds what was written in the background: wait until its index has caught up,
    so that one measurement does not pay for the vectors of the writes of the one before."""
    if service != "matchmaking":
        return
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(httpx.HTTPError, KeyError, ValueError):
            stats = httpx.get(url + "/index", headers=headers, timeout=30).json()
            if stats["items_pending"] == 0 and stats["changes_behind"] == 0:
                return
        time.sleep(0.5)


def measure(
    port: int,
    pid: int,
    kind: str,
    clients: int,
    scenario: Scenario,
    headers: list[dict[str, str]],
    args: Any,
    tmp: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "headers": headers,
        "kind": kind,
        "clients": clients,
        "duration": args.duration,
        "warmup": args.warmup,
        "read_paths": scenario.read_paths,
        "create": scenario.create,
        "then": scenario.then,
    }
    before, own_before = cpu_seconds(pid), cpu_seconds(pid, descendants=False)
    spy = None
    if profile is not None:
        cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(max(1, int(args.duration))), "--rate", "200"]
        cmd += ["--format", "raw", "--nonblocking", "--output", str(profile)]
        spies: list[subprocess.Popen[bytes]] = []
        spy = threading.Timer(args.warmup, lambda: spies.append(start(cmd, log=tmp / "py-spy.log")))
        spy.start()
    try:
        import uvloop

        # in this process: it does nothing else while the load runs
        result = uvloop.run(_load(spec))
    finally:
        if spy is not None:
            spy.cancel()
            for p in spies:
                try:
                    p.wait(60)
                finally:
                    stop(p)
    cpu, own = cpu_seconds(pid) - before, cpu_seconds(pid, descendants=False) - own_before
    total = result["requests"] + result["errors"]
    result["server_cpu_us_per_request"] = cpu / total * 1e6 if total else None
    # the serving process alone (matchmaking's encoder child, when it runs one, left out)
    result["server_own_cpu_us_per_request"] = own / total * 1e6 if total else None
    return result


def fmt(r: dict[str, Any]) -> str:
    cpu = r.get("server_cpu_us_per_request")
    p50, p99 = r.get("p50_ms") or 0.0, r.get("p99_ms") or 0.0
    errors = f", {r['errors']} errors {r['error_statuses']}" if r["errors"] else ""
    own = r.get("server_own_cpu_us_per_request")
    children = f" (serving process {own:.0f})" if own is not None and cpu and abs(cpu - own) >= 0.05 * cpu else ""
    return (
        f"{r['rps']:7.0f} req/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  CPU {cpu or 0:6.0f} µs/req{children}"
        f"  ({r['requests']} ok{errors})"
    )


def bench_service(service: str, backend: str, args: Any, tmp: Path, broker_env: dict[str, str]) -> dict[str, Any]:
    from distretto_shared.identity import Keyring, Principal, Role

    prefix = service.upper()
    ring = Keyring.generate(("gateway", service))
    gateway = ring.signer("gateway", ttl=3600)
    principals = [Principal(id=f"user:bench-{i}", role=Role.ADMIN) for i in range(max(args.clients))]
    headers = [{"X-Distretto-Identity": gateway.mint(p, service)} for p in principals]
    out: dict[str, Any] = {}
    with database(backend, service, tmp) as target:
        data = tmp / f"{service}-{backend}"
        data.mkdir()
        env = {
            **broker_env,
            # Topics of this measurement's own: a service that consumes another's events (matchmaking,
            # projects and the newsletter consume membership's) would otherwise work through the backlog
            # an earlier measurement wrote while it is measured (matchmaking profiling and encoding
            # thousands of new organisations), and its figures would depend on which services ran before.
            "DISTRETTO_TOPIC_PREFIX": f"{broker_env['DISTRETTO_TOPIC_PREFIX']}{service}-{backend}.",
            **ring.env(service),
            **target.env(prefix),
            f"{prefix}_CREATE_TOPICS": "true",
            f"{prefix}_LOG_LEVEL": "INFO",
            "DISTRETTO_DATA_DIR": str(data),
            "NEWSLETTER_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
            "MATCHMAKING_INDEX_ENCODER_PROCESS": "true" if args.matchmaking_encoder == "process" else "false",
        }
        port = free_port()
        log = data / "service.log" if args.keep_logs else None
        began = time.monotonic()
        proc = start([sys.executable, "-m", service, "serve", "--port", str(port)], env, log)
        bare_port = free_port()
        bare_cmd = [sys.executable, str(HERE / "bare.py"), "--service", service, "--url", target.url]
        bare_cmd += ["--port", str(bare_port)] + (["--schema", target.schema] if target.schema else [])
        bare: subprocess.Popen[bytes] | None = None
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
            up = time.monotonic() - began
            # the service's migrations are done: the yardstick reads their tables (and starts while we seed)
            bare = start(bare_cmd, log=data / "bare.log")
            scenario = seed(service, f"http://127.0.0.1:{port}", headers[0], target, args.seed)
            warm_up(f"http://127.0.0.1:{port}", headers[0], scenario)
            wait_http(f"http://127.0.0.1:{bare_port}/healthz", bare, data / "bare.log")
            print(
                f"  {service} on {backend}: started in {up:.1f} s, seeded and yardstick up in {time.monotonic() - began - up:.1f} s"
            )
            for kind in args.scenarios:
                for clients in args.clients:
                    key = f"{kind} c={clients}"
                    spy = None
                    if args.profile and clients == max(args.clients):
                        spy = Path(args.profile) / f"{service}-{backend}-{kind}-c{clients}.txt"
                    settle(service, f"http://127.0.0.1:{port}", headers[0])
                    s = measure(port, proc.pid, kind, clients, scenario, headers, args, tmp, spy)
                    if spy is not None and spy.exists():
                        s["profile"] = profile_summary(spy)
                        shares = ", ".join(f"{k} {v:.0%}" for k, v in s["profile"].items() if v >= 0.02)
                        print(f"  {'':<32} profile ({spy.name}): {shares}")
                    b = measure(bare_port, bare.pid, kind, clients, scenario, headers, args, tmp)
                    ratio = s["rps"] / b["rps"] if b["rps"] else None
                    out[key] = {"service": s, "bare": b, "ratio": ratio, "load_average": os.getloadavg()[0]}
                    print(f"  {service:<11} {backend:<8} {key:<12} service {fmt(s)}")
                    print(f"  {'':<11} {'':<8} {'':<12} bare    {fmt(b)}")
                    print(f"  {'':<11} {'':<8} {'':<12} ratio service/bare {ratio or 0:.2f}", flush=True)
        finally:
            if bare is not None:
                stop(bare)
            stop(proc)
    return out


@contextmanager
def broker(tmp: Path, enabled: bool) -> Iterator[dict[str, str]]:
    if not enabled:
        # no broker: the relays retry in the background and publish nothing
        yield {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "DISTRETTO_TOPIC_PREFIX": "bench."}
        return
    prefix = {"DISTRETTO_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:8]}."}
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield {"KAFKA_BOOTSTRAP_SERVERS": external, **prefix}
        return
    from distretto_dev.kafka_runner import EmbeddedKafka

    with EmbeddedKafka(data_dir=tmp / "kafka") as kafka:
        yield {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, **kafka.credentials.env(), **prefix}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("hog")
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument(
        "--backends",
        default="sqlite,postgres" if os.environ.get(POSTGRES_ENV) else "sqlite",
        help=f"default: sqlite, and postgres when {POSTGRES_ENV} is set",
    )
    parser.add_argument("--clients", default="1,32", help="concurrent clients, comma-separated")
    parser.add_argument("--scenarios", default="read,write", help="read, write, mixed (4 reads : 1 create+change)")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=100, help="rows seeded to read")
    parser.add_argument("--hog", type=int, default=0, help="busy-loop processes running during the runs")
    parser.add_argument("--no-kafka", action="store_true", help="no broker (relays publish nothing)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (in the temp dir)")
    parser.add_argument("--profile", help="folder: py-spy profiles of the service at the highest client count")
    parser.add_argument("--json", action="store_true", help="print the results as JSON at the end")
    parser.add_argument(
        "--matchmaking-encoder",
        choices=("process", "thread"),
        default="process",
        help="where matchmaking's encoder worker runs: a child process at a lower priority (the default, as "
        "served) or a thread of the serving process",
    )
    args = parser.parse_args()
    if args.command == "hog":
        hog()
        return
    args.clients = [int(c) for c in args.clients.split(",") if c]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    services = [s for s in args.services.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    started = time.monotonic()
    print(
        f"request-path benchmark — {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
        + (f", {args.hog} CPU hogs running" if args.hog else ""),
        flush=True,
    )
    if "matchmaking" in services:
        where = "a child process (nice 10)" if args.matchmaking_encoder == "process" else "a thread of the service"
        print(f"matchmaking's encoder worker runs in {where}; server CPU counts the service and its children")
    results: dict[str, Any] = {
        "load_average": {"start": os.getloadavg()},
        "hogs": args.hog,
        "matchmaking_encoder": args.matchmaking_encoder,
        "results": {},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="svcbench-") as tmp_name:
            tmp = Path(tmp_name)
            with broker(tmp, not args.no_kafka) as broker_env:
                for _ in range(args.hog):
                    start([sys.executable, __file__, "hog"])
                for backend in backends:
                    for service in services:
                        results["results"].setdefault(service, {})[backend] = bench_service(
                            service, backend, args, tmp, broker_env
                        )
                results["load_average"]["end"] = os.getloadavg()
                stop_all()
    finally:
        stop_all()
    results["seconds"] = round(time.monotonic() - started, 1)
    print(f"\nsummary: requests/s ratio service/bare at each client count ({results['seconds']} s)")
    for service, per_backend in results["results"].items():
        for backend, rows in per_backend.items():
            cells = "  ".join(f"{k} {v['ratio']:.2f}" for k, v in rows.items() if v["ratio"] is not None)
            print(f"  {service:<11} {backend:<8} {cells}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        print(json.dumps(results))  # one line, the last


if __name__ == "__main__":
    main()
