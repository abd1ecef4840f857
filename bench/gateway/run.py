"""Gateway benchmark: requests/s through the gateway vs straight to a service, and the latency it adds.

    uv run python bench/gateway/run.py [--duration 10] [--connections 32] [--workers 1,2]

Processes (all on this machine):
  upstream   uvicorn (uvloop + httptools) serving a small JSON answer on any path
  gateway    ``python -m gateway serve`` (uvloop + httptools) with the upstream as every service
  load       this script's ``load`` subcommand: asyncio + uvloop, raw sockets, N keep-alive
             connections, one request in flight per connection, latency per request

Measured in the same run:
  1. unloaded latency (1 connection): direct vs gateway → the latency the gateway adds (p50, p99)
  2. throughput with N connections: direct, gateway with 1 worker, gateway with 2 workers

The gateway requests carry a real bearer token (from POST /auth/token) to a policy-protected
route, so identity, policy, rate limit, header rewriting, metrics and the proxy are all paid for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BODY = json.dumps({"organisations": 193, "staff": 11_000, "rd_staff": 1_400, "turnover_eur": 5.5e9}).encode()


# --- the upstream: a small JSON answer on any path


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(
        upstream_app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


# --- the load generator


async def _connection(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    warmup_until: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            start = time.perf_counter()
            if start >= deadline:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            end = time.perf_counter()
            if status != 200:
                errors.append(status)
            elif start >= warmup_until:
                latencies.append(end - start)
    finally:
        writer.close()


async def _load(url: str, connections: int, duration: float, warmup: float, headers: dict[str, str]) -> dict[str, Any]:
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    lines = [f"GET /{path} HTTP/1.1", f"Host: {hostport}", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    errors: list[int] = []
    now = time.perf_counter()
    warmup_until = now + warmup
    deadline = warmup_until + duration
    await asyncio.gather(
        *(_connection(host, int(port), request, deadline, warmup_until, latencies, errors) for _ in range(connections))
    )
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": len(errors),
        "error_statuses": sorted(set(errors))[:5],
        "rps": n / duration,
        "p50_ms": latencies[n // 2] * 1000 if n else None,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else None,
        "mean_ms": statistics.fmean(latencies) * 1000 if n else None,
    }


def run_load(args: argparse.Namespace) -> None:
    import uvloop

    headers = json.loads(args.headers)
    result = uvloop.run(_load(args.url, args.connections, args.duration, args.warmup, headers))
    print(json.dumps(result))


def load(url: str, connections: int, duration: float, headers: dict[str, str], warmup: float = 1.0) -> dict[str, Any]:
    """Run the load generator in its own process; its JSON result."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "load",
            "--url",
            url,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
            "--headers",
            json.dumps(headers),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_gateway(workers: int, upstream: str, data: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    import httpx

    from distretto_shared.identity import Keyring

    port = free_port()
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{data / f'gateway-{workers}.db'}",
        "GATEWAY_ADMIN_EMAIL": "bench@distretto.example",
        "GATEWAY_ADMIN_PASSWORD": "bench-admin-password",
        "GATEWAY_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # publishes nothing
        "GATEWAY_CREATE_TOPICS": "false",
        "GATEWAY_LOG_LEVEL": "WARNING",
        # limits stay on (their cost is measured) but high enough not to bite
        "GATEWAY_RATE_LIMIT_PER_MINUTE": "100000000",
        "GATEWAY_RATE_LIMIT_BURST": "1000000",
        "DISTRETTO_DATA_DIR": str(data),
        **{f"GATEWAY_{name}_URL": upstream for name in ("MEMBERSHIP", "PROJECTS", "NEWSLETTER", "MATCHMAKING")},
        # its own key, as make up makes one: it signs the bench user's token and every credential it mints
        **Keyring.generate(("gateway",)).env("gateway"),
    }
    proc = start([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", str(workers)], env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/auth/me")
    token = httpx.post(
        url + "/auth/token", json={"email": "bench@distretto.example", "password": "bench-admin-password"}
    ).json()["access_token"]
    return proc, url, {"Authorization": f"Bearer {token}"}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                pids.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


def measured(url: str, connections: int, duration: float, headers: dict[str, str], pid: int | None) -> dict[str, Any]:
    """``load`` plus the CPU the measured server spent per request (robust on a shared machine)."""
    before = cpu_seconds(pid) if pid else 0.0
    result = load(url, connections, duration, headers, warmup=0.5)
    if pid and result["requests"]:
        result["server_cpu_us_per_request"] = (
            (cpu_seconds(pid) - before) / (result["requests"] + result["errors"]) * 1e6
        )
    return result


def fmt(r: dict[str, Any]) -> str:
    cpu = r.get("server_cpu_us_per_request")
    return (
        f"{r['rps']:>8.0f} req/s   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms"
        f"   ({r['requests']} ok, {r['errors']} errors)" + (f"   server CPU {cpu:5.0f} µs/req" if cpu else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    ld = sub.add_parser("load")
    ld.add_argument("--url", required=True)
    ld.add_argument("--connections", type=int, default=32)
    ld.add_argument("--duration", type=float, default=10)
    ld.add_argument("--warmup", type=float, default=1)
    ld.add_argument("--headers", default="{}")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per throughput measurement")
    parser.add_argument("--latency-duration", type=float, default=5.0, help="seconds per unloaded-latency run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="gateway worker counts to measure")
    args = parser.parse_args()
    if args.command == "upstream":
        serve_upstream(args.port)
        return
    if args.command == "load":
        run_load(args)
        return

    cpus = os.cpu_count()
    load_avg = os.getloadavg()[0]
    print(f"gateway benchmark — {cpus} CPUs, load average {load_avg:.2f} at start")
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    procs: list[subprocess.Popen[bytes]] = [start([sys.executable, __file__, "upstream", "--port", str(up_port)])]
    results: dict[str, dict[str, Any]] = {}
    try:
        wait_http(upstream + "/")
        with tempfile.TemporaryDirectory() as tmp:
            direct = upstream + "/projects"
            worker_counts = [int(w) for w in args.workers.split(",") if w]
            gateways: dict[int, tuple[str, dict[str, str], int]] = {}
            for workers in worker_counts:
                proc, url, headers = start_gateway(workers, upstream, Path(tmp))
                procs.append(proc)
                gateways[workers] = (url + "/api/projects/projects", headers, proc.pid)
            up_pid = procs[0].pid

            print(f"\n1. unloaded latency, 1 connection, {args.latency_duration:g} s each")
            results["direct c=1"] = measured(direct, 1, args.latency_duration, {}, up_pid)
            print(f"   direct            {fmt(results['direct c=1'])}")
            url, headers, pid = gateways[worker_counts[0]]
            results["gateway c=1"] = measured(url, 1, args.latency_duration, headers, pid)
            print(f"   gateway ({worker_counts[0]} worker)  {fmt(results['gateway c=1'])}")
            d, g = results["direct c=1"], results["gateway c=1"]
            added50, added99 = g["p50_ms"] - d["p50_ms"], g["p99_ms"] - d["p99_ms"]
            print(f"   added by the gateway: p50 {added50:.2f} ms, p99 {added99:.2f} ms")

            print(f"\n2. throughput, {args.connections} connections, {args.duration:g} s each")
            results["direct"] = measured(direct, args.connections, args.duration, {}, up_pid)
            print(f"   direct            {fmt(results['direct'])}")
            for workers in worker_counts:
                url, headers, pid = gateways[workers]
                key = f"gateway {workers}w"
                results[key] = measured(url, args.connections, args.duration, headers, pid)
                print(f"   gateway ({workers} worker{'s' if workers > 1 else ''}) {fmt(results[key])}")
                added = results[key]["p50_ms"] - results["direct"]["p50_ms"]
                print(f"     p50 added under load: {added:.2f} ms")
    finally:
        for proc in reversed(procs):
            stop(proc)
    print("\n" + json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
