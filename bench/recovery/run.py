"""Recovery benchmark: how fast services start, and how fast work resumes after the broker comes back.

Measured in one invocation, against a throwaway broker (SASL/SCRAM + ACLs), each service on a
fresh SQLite file of its own:

1. **Time to ready per service** (``--runs`` starts each): from spawning ``python -m <service>
   serve`` to ``/healthz`` answering (the process is up: imports, app built, migrations applied) and
   to ``/readyz`` answering 200 (database, broker, relay; not for the gateway, whose readiness is
   its upstreams'); beside it, the time ``python -c "import
   <service>.app"`` takes alone (the imports' share), with the installed bytecode and compiled
   from source (no ``.pyc``: what every start costs where bytecode is never written, e.g. with
   ``PYTHONDONTWRITEBYTECODE`` set and a ``uv sync`` without ``--compile-bytecode``).
2. **Broker restart** (``--runs`` outages per variant): membership and matchmaking run; the broker
   is killed (SIGKILL); during ``--outage`` seconds ``--orgs`` organisations apply and are approved
   (their events wait in membership's outbox); the broker is started again on its data. Measured:
   the broker's own start (spawn → it answers metadata), then from the broker ready to membership's
   outbox drained, to matchmaking holding every new profile (its consumer caught up), and to
   membership's ``/readyz`` answering 200. Two variants, same run: **before** (the reconnect
   backoff capped at 10 s, the relay's old cap; standby relays every 5 s) and **after** (the
   defaults: ``kafka_retry_backoff_max`` 2 s, ``relay_standby_interval`` 1 s).

Figures are min / median / max over the runs; the load average is printed at each phase (the
machine may be shared: compare the two variants of one invocation, not runs of different days).

Usage: uv run python bench/recovery/run.py [--runs 3] [--outage 8] [--orgs 10]
       [--services membership,projects,newsletter,matchmaking,partners,gateway] [--skip-start] [--json]
Every child process (broker, services) dies with the benchmark (also on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("membership", "projects", "newsletter", "matchmaking", "partners", "gateway")
VARIANTS = {
    "before": {"KAFKA_RETRY_BACKOFF_MAX": "10", "RELAY_STANDBY_INTERVAL": "5"},
    "after": {},
}

_CHILDREN: list[subprocess.Popen[bytes]] = []


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
        cwd=ROOT,
    )
    _CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ValueError):
        _CHILDREN.remove(proc)


def stop_all() -> None:
    for proc in list(_CHILDREN):
        stop(proc, timeout=10)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Callable[[], Awaitable[Any]], limit: float, what: str) -> float:
    """Seconds until ``check`` is truthy (polled every 50 ms); raises after ``limit`` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        with contextlib.suppress(Exception):
            if await check():
                return time.monotonic() - t0
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what}: not within {limit:.0f}s")


async def answers(url: str) -> bool:
    import httpx

    async with httpx.AsyncClient() as client:
        return (await client.get(url, timeout=2)).status_code == 200


def service_env(service: str, workdir: Path, bootstrap: str, prefix: str, extra: dict[str, str]) -> dict[str, str]:
    up = service.upper()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DISTRETTO_TOPIC_PREFIX": prefix,
        "DISTRETTO_DATA_DIR": str(workdir / "data"),
        f"{up}_LOG_LEVEL": "INFO",
        **{f"{up}_{k}": v for k, v in extra.items()},
    }
    if service == "gateway":
        env |= {"GATEWAY_ADMIN_EMAIL": "bench@recovery.example", "GATEWAY_ADMIN_PASSWORD": uuid.uuid4().hex}
    if service == "newsletter":
        env |= {
            "NEWSLETTER_SMTP_SERVERS": f"127.0.0.1:{free_port()}",
            "NEWSLETTER_MEMBERSHIP_URL": "http://127.0.0.1:9",
        }
    return env


def summary(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{min(values):6.2f} / {statistics.median(values):6.2f} / {max(values):6.2f}"


# --------------------------------------------------------------------------------------------------
# 1. Time to ready
# --------------------------------------------------------------------------------------------------


async def import_time(service: str, bytecode: bool = True) -> float:
    """Seconds ``import <service>.app`` takes in a new interpreter; ``bytecode=False``: compiled from
    source, as when no ``.pyc`` was ever written (an empty ``PYTHONPYCACHEPREFIX``, nothing written)."""
    code = f"import time; t = time.perf_counter(); import {service}.app; print(time.perf_counter() - t)"
    env = os.environ.copy()
    if not bytecode:
        env |= {"PYTHONPYCACHEPREFIX": str(Path(tempfile.mkdtemp(prefix="no-pyc-"))), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, env=env)
    out, _ = await proc.communicate()
    return float(out.decode().strip().splitlines()[-1])


async def start_times(service: str, workdir: Path, bootstrap: str, runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"import from source": [], "import": [], "healthz": [], "readyz": []}
    for n in range(runs):
        figures["import from source"].append(await import_time(service, bytecode=False))
        figures["import"].append(await import_time(service))
        run_dir = workdir / f"{service}-{n}"
        run_dir.mkdir(parents=True)
        port = free_port()
        env = service_env(service, run_dir, bootstrap, f"rb{uuid.uuid4().hex[:8]}.", {})
        t0 = time.monotonic()
        proc = spawn([sys.executable, "-m", service, "serve", "--port", str(port)], env, run_dir / "service.log")
        base = f"http://127.0.0.1:{port}"
        try:
            await until(partial(answers, base + "/healthz"), 180, f"{service} /healthz")
            figures["healthz"].append(time.monotonic() - t0)
            if service != "gateway":  # the gateway's /readyz is its upstreams' (none run here)
                await until(partial(answers, base + "/readyz"), 180, f"{service} /readyz")
                figures["readyz"].append(time.monotonic() - t0)
        finally:
            stop(proc)
    return figures


# --------------------------------------------------------------------------------------------------
# 2. Broker restart
# --------------------------------------------------------------------------------------------------


def sqlite_count(path: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def broker_restart(broker: Any, workdir: Path, variant: str, runs: int, outage: float, orgs: int) -> dict:
    import httpx

    from distretto_dev.testing import ADMIN, identity_auth

    prefix = f"rb{uuid.uuid4().hex[:8]}."
    procs: dict[str, tuple[subprocess.Popen[bytes], str, Path]] = {}
    for service in ("membership", "matchmaking"):
        run_dir = workdir / f"{variant}-{service}"
        run_dir.mkdir(parents=True)
        port = free_port()
        env = service_env(service, run_dir, broker.bootstrap_servers, prefix, VARIANTS[variant])
        proc = spawn([sys.executable, "-m", service, "serve", "--port", str(port)], env, run_dir / "service.log")
        procs[service] = (proc, f"http://127.0.0.1:{port}", run_dir / "data" / f"{service}.db")
    figures: dict[str, list[float]] = {"broker start": [], "outbox drained": [], "consumer caught up": [], "ready": []}
    try:
        for _, url, _ in procs.values():
            await until(lambda u=url: answers(u + "/readyz"), 240, f"{url} ready")
        membership_url, membership_db = procs["membership"][1], procs["membership"][2]
        matchmaking_db = procs["matchmaking"][2]
        total = 0
        async with httpx.AsyncClient(
            base_url=membership_url, auth=identity_auth(ADMIN, "membership"), timeout=30
        ) as client:
            for n in range(runs):
                broker.kill()
                down_at = time.monotonic()
                for i in range(orgs):
                    org = await client.post(
                        "/organisations",
                        json={"name": f"Recovery {variant} {n}-{i}", "kind": "company", "sectors": ["biotech"]},
                    )
                    org.raise_for_status()
                    (await client.post(f"/organisations/{org.json()['id']}/approve")).raise_for_status()
                total += orgs
                await asyncio.sleep(max(0.0, outage - (time.monotonic() - down_at)))
                t0 = time.monotonic()
                await asyncio.to_thread(broker.start, 180)
                ready_at = time.monotonic()
                figures["broker start"].append(ready_at - t0)

                async def drained() -> bool:
                    return sqlite_count(membership_db, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0

                async def consumed(expected: int = total) -> bool:
                    return sqlite_count(matchmaking_db, "SELECT count(*) FROM organisation") >= expected

                waits = await asyncio.gather(
                    until(drained, 180, "outbox drained"),
                    until(consumed, 180, "profiles consumed"),
                    until(lambda: answers(membership_url + "/readyz"), 180, "membership ready"),
                )
                figures["outbox drained"].append(waits[0])
                figures["consumer caught up"].append(waits[1])
                figures["ready"].append(waits[2])
    finally:
        for proc, _, _ in procs.values():
            stop(proc)
    return figures


# --------------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    # First: the test key ring and secrets go into this process's environment, which the services inherit.
    import distretto_dev.testing  # noqa: F401
    from distretto_dev.kafka_runner import EmbeddedKafka

    out: dict[str, Any] = {"load": {}}
    with tempfile.TemporaryDirectory(prefix="distretto-recovery-") as tmp:
        workdir = Path(tmp)
        broker = EmbeddedKafka(data_dir=workdir / "kafka", heap="512m")
        await asyncio.to_thread(broker.start, 180)
        os.environ.update(broker.credentials.env())
        try:
            if not args.skip_start:
                out["load"]["start"] = load()
                out["start"] = {}
                for service in args.services:
                    figures = await start_times(service, workdir / "start", broker.bootstrap_servers, args.runs)
                    out["start"][service] = figures
                    say(
                        f"{service:12} import from source {summary(figures['import from source'])}   "
                        f"import {summary(figures['import'])}   /healthz {summary(figures['healthz'])}   "
                        f"/readyz {summary(figures['readyz'])}   (s, min / median / max)"
                    )
                out["load"]["start-end"] = load()
            out["restart"] = {}
            for variant in VARIANTS:
                out["load"][f"restart-{variant}"] = load()
                figures = await broker_restart(broker, workdir / "restart", variant, args.runs, args.outage, args.orgs)
                out["restart"][variant] = figures
                for name, values in figures.items():
                    say(f"broker restart, {variant:6} {name:20} {summary(values)} s")
            out["load"]["end"] = load()
        finally:
            broker.stop()
    return out


def say(msg: str) -> None:
    print(msg, file=sys.stderr if ARGS_JSON else sys.stdout, flush=True)


ARGS_JSON = False


def report(out: dict[str, Any]) -> Iterator[str]:
    if "start" in out:
        yield "\nTime to ready after start (s: min / median / max), load " + out["load"]["start"]
        yield "| service | import from source | import | /healthz | /readyz |\n|---|---|---|---|---|"
        for service, f in out["start"].items():
            yield (
                f"| {service} | {summary(f['import from source'])} | {summary(f['import'])} "
                f"| {summary(f['healthz'])} | {summary(f['readyz'])} |"
            )
    yield "\nBroker killed, restarted after the outage (s from the broker ready, min / median / max)"
    names = list(next(iter(out["restart"].values())))
    yield "| variant | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|"
    for variant, f in out["restart"].items():
        yield f"| {variant} | " + " | ".join(summary(f[n]) for n in names) + " |"
    yield "load averages: " + ", ".join(f"{k} {v}" for k, v in out["load"].items())


def main() -> int:
    global ARGS_JSON
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--outage", type=float, default=8.0, help="seconds the broker stays down")
    parser.add_argument("--orgs", type=int, default=10, help="organisations approved during each outage")
    parser.add_argument("--services", type=lambda s: [x for x in s.split(",") if x], default=list(SERVICES))
    parser.add_argument("--skip-start", action="store_true", help="only the broker restart")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ARGS_JSON = args.json
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    try:
        out = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130
    finally:
        stop_all()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for line in report(out):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
