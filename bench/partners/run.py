"""Partner streams benchmark: one burst of events fanned out to many webhook endpoints and SSE
clients, beside a baseline measured in the same run.

    uv run python bench/partners/run.py [--events 100] [--endpoints 100] [--clients 1000] [--runs 3]

Processes (all on this machine):
  broker     Kafka from the jars (KRaft), or the one named by KAFKA_BOOTSTRAP_SERVERS
  partners   ``python -m partners serve`` on its own SQLite database (or DISTRETTO_BENCH_POSTGRES_URL),
             ``--workers`` webhook delivery workers
  this       the receiver (uvicorn + httptools, 100 paths = 100 endpoints, verifies nothing: it
             records the arrival time of each webhook-id), the SSE clients (raw sockets, one
             connection each, reading ids as frames arrive) and the publisher

Per run:
  1. partners: ``--events`` OrganisationJoined events are published to the internal topic in one
     burst; the projector makes each a public event; every event goes to every endpoint (Standard
     Webhooks, signed, in order per endpoint, every attempt logged) and to every SSE client.
     Latency = arrival − the moment the internal event was handed to Kafka.
  2. baseline, webhooks: the same signed bodies POSTed to the same 100 receiver paths by a bare
     httpx client (one task per endpoint, in order), no database, no broker.
  3. baseline, consumption: the same events read back from Kafka by one raw aiokafka consumer.

Figures: deliveries per second (events × receivers ÷ time from the first publish to the last
arrival), latency p50/p99; three runs → min / median / max, and the ratios to the baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GRANTED = "distretto.public.organisation.joined.v1"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Receiver:
    """Arrival times per (path, webhook-id)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.count = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        now = time.perf_counter()
        webhook_id = ""
        for key, value in scope["headers"]:
            if key == b"webhook-id":
                webhook_id = value.decode()
        self.arrivals.setdefault(f"{scope['path']}|{webhook_id}", now)
        self.count += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def serve(app: Any, port: int) -> Any:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="httptools",
            timeout_keep_alive=120,  # a loaded machine: no keep-alive race with the clients
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return server, task


async def sse_client(port: int, headers: dict[str, str], arrivals: dict[str, float], want: int) -> None:
    """One SSE connection: the arrival time of each event id (the ``id:`` position), until ``want``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    request = "GET /stream HTTP/1.1\r\nHost: partners\r\nAccept: text/event-stream\r\n"
    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(request.encode())
    await writer.drain()
    pattern = re.compile(rb"\nid: (\d+)\n|^id: (\d+)\n")
    seen = 0
    tail = b""
    try:
        while seen < want:
            chunk = await reader.read(65536)
            if not chunk:
                return
            now = time.perf_counter()
            data = tail + chunk
            for match in pattern.finditer(data):
                arrivals[(match.group(1) or match.group(2)).decode()] = now
                seen += 1
            tail = data[-64:] if b"\n" not in data[-64:] else data[data.rfind(b"\n") :]
    finally:
        writer.close()


def joined_events(n: int, run: int) -> list[Any]:
    from distretto_shared.contracts import membership as ms

    out = []
    for i in range(n):
        oid = f"bench-{run}-{i:05d}"
        profile = ms.OrganisationProfile(
            organisation_id=oid,
            name=f"Bench Bio {i} S.r.l.",
            kind="company",
            sectors=["biotech", "medtech"],
            province="SI",
            size_class="small",
            status="active",
        )
        out.append(ms.OrganisationJoined(organisation_id=oid, profile=profile, joined_on=date(2026, 12, 4)))
    return out


async def publish_timed(bootstrap: str, events: list[Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Publish in one burst; the perf_counter time each event was handed to Kafka, by organisation
    id and by the id its public event will have (the projection derives it from the internal id)."""
    from aiokafka import AIOKafkaProducer

    from distretto_shared.events import encode
    from distretto_shared.kafka_security import default_credentials
    from distretto_shared.topics import topic_name

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=0, **default_credentials().aiokafka()
    )
    await producer.start()
    from partners import domain

    sent: dict[str, float] = {}
    public: dict[str, float] = {}
    futures = []
    try:
        for event in events:
            key, headers, body = encode(event, source="/bench")
            sent[event.organisation_id] = public[domain.public_event_id(headers["ce_id"], GRANTED)] = (
                time.perf_counter()
            )
            futures.append(
                await producer.send(
                    topic_name(event.topic),
                    value=body,
                    key=key.encode(),
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent, public


async def one_run(args: argparse.Namespace, bootstrap: str, run: int, workdir: Path) -> dict[str, Any]:
    import httpx

    from distretto_dev.testing import ServiceProcess, free_port, identity_headers
    from distretto_shared.identity import Principal, Role

    os.environ["DISTRETTO_TOPIC_PREFIX"] = f"bench{uuid.uuid4().hex[:8]}."
    receiver = Receiver()
    receiver_port = free_port()
    server, server_task = await serve(receiver, receiver_port)
    db_url = os.environ.get("DISTRETTO_BENCH_POSTGRES_URL") or f"sqlite+aiosqlite:///{workdir}/partners-{run}.db"
    env = {
        "PARTNERS_DATABASE_URL": db_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DISTRETTO_DATA_DIR": str(workdir / f"var-{run}"),
        "PARTNERS_WEBHOOK_REQUIRE_HTTPS": "false",
        "PARTNERS_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",  # the receiver is on loopback
        "PARTNERS_WEBHOOK_WORKERS": str(args.workers),
        "PARTNERS_WEBHOOK_POLL_SECONDS": "0.2",
        "PARTNERS_STREAM_POLL_SECONDS": "0.5",
        "PARTNERS_LOG_LEVEL": "WARNING",
        "PARTNERS_RELAY_POLL_INTERVAL": "0.2",
    }
    proc = await ServiceProcess("partners", env=env, log_path=workdir / f"partners-{run}.log").start(timeout=180)
    result: dict[str, Any] = {}
    try:
        key_id = f"bench-{run}"
        async with proc.client(timeout=60) as admin:
            made = await admin.post("/partners", json={"name": "Bench", "event_types": [GRANTED], "api_key_id": key_id})
            made.raise_for_status()
            pid = made.json()["id"]
            for e in range(args.endpoints):
                created = await admin.post(
                    f"/partners/{pid}/webhooks", json={"url": f"http://127.0.0.1:{receiver_port}/e{e}"}
                )
                created.raise_for_status()
        partner = Principal(id=f"apikey:{key_id}", role=Role.PARTNER)
        sse_arrivals: list[dict[str, float]] = [{} for _ in range(args.clients)]
        clients = []
        open_now = 0.0

        async def streams_open(admin: Any) -> float:
            try:
                text = (await admin.get("/metrics")).text
            except httpx.HTTPError:  # busy: ask again
                return -1.0
            return next(
                (
                    float(line.split()[1])
                    for line in text.splitlines()
                    if line.startswith("distretto_partners_streams_open ")
                ),
                0.0,
            )

        # Connect in waves of 100, each wave open before the next (a thousand requests at once would
        # only measure the connection storm).
        async with proc.client(timeout=180) as admin:
            for c in range(args.clients):
                clients.append(
                    asyncio.create_task(
                        sse_client(
                            proc.port, identity_headers(partner, "partners", ttl=3600), sse_arrivals[c], args.events
                        )
                    )
                )
                if c % 100 == 99 or c == args.clients - 1:
                    for _ in range(150):
                        open_now = await streams_open(admin)
                        if open_now >= c + 1:
                            break
                        await asyncio.sleep(0.2)
        result["streams_open"] = open_now

        events = joined_events(args.events, run)
        _, by_event_first_send = await publish_timed(bootstrap, events)
        t0 = min(by_event_first_send.values())
        want_hooks = args.events * args.endpoints
        deadline = time.perf_counter() + args.timeout
        while len(receiver.arrivals) < want_hooks and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        done = await asyncio.wait(clients, timeout=max(1.0, deadline - time.perf_counter()))
        for task in done[1]:
            task.cancel()
        # SSE ids are log positions: one endpoint's messages give position → event id
        async with proc.client(timeout=60) as admin:
            first = (await admin.get(f"/partners/{pid}/webhooks")).json()[0]["id"]
            items: list[dict[str, Any]] = []
            while True:
                page = (
                    await admin.get(f"/webhooks/{first}/messages", params={"limit": 200, "offset": len(items)})
                ).json()
                items += page["items"]
                if not page["items"] or len(items) >= page["total"]:
                    break
        seq_to_event = {str(m["seq"]): m["event_id"] for m in items}
        hook_lat: list[float] = []
        for key_, arrived in receiver.arrivals.items():
            _, _, event_id = key_.partition("|")
            if event_id in by_event_first_send:
                hook_lat.append(arrived - by_event_first_send[event_id])
        last_hook = max(receiver.arrivals.values()) if receiver.arrivals else t0
        sse_lat: list[float] = []
        last_sse = t0
        sse_count = 0
        for arrivals in sse_arrivals:
            for seq, arrived in arrivals.items():
                public_id = seq_to_event.get(seq, "")
                if public_id in by_event_first_send:
                    sse_lat.append(arrived - by_event_first_send[public_id])
                    sse_count += 1
                    last_sse = max(last_sse, arrived)
        result |= {
            "hooks": len(receiver.arrivals),
            "hooks_expected": want_hooks,
            "hooks_per_s": len(receiver.arrivals) / max(last_hook - t0, 1e-9),
            "hook_p50_ms": pct(hook_lat, 50) * 1000,
            "hook_p99_ms": pct(hook_lat, 99) * 1000,
            "sse": sse_count,
            "sse_expected": args.events * args.clients,
            "sse_per_s": sse_count / max(last_sse - t0, 1e-9),
            "sse_p50_ms": pct(sse_lat, 50) * 1000,
            "sse_p99_ms": pct(sse_lat, 99) * 1000,
        }
    finally:
        proc.stop()
        server.should_exit = True
        await server_task

    print(json.dumps({"run": run + 1, "phase": "partners", **{k: round(v, 1) for k, v in result.items()}}), flush=True)
    result |= await baseline_http(args, bodies=[e.model_dump_json() for e in joined_events(args.events, run)])
    result |= await baseline_kafka(args, bootstrap, run)
    return result


async def baseline_http(args: argparse.Namespace, bodies: list[str]) -> dict[str, Any]:
    """The same bodies, signed the same way, POSTed by a bare client to 100 paths, one task per endpoint."""
    import httpx

    from distretto_dev.testing import free_port
    from partners import domain

    receiver = Receiver()
    port = free_port()
    server, task = await serve(receiver, port)
    secret = domain.new_secret()
    latencies: list[float] = []
    try:
        async with httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
            timeout=httpx.Timeout(120),  # the same patience as the partners' workers have (a loaded machine)
            trust_env=False,
        ) as client:
            t0 = time.perf_counter()

            async def endpoint(e: int) -> None:
                for i, body in enumerate(bodies):
                    msg_id = f"msg-{i}"
                    from datetime import UTC, datetime

                    stamp = datetime.now(UTC)
                    headers = {
                        "content-type": "application/json",
                        "webhook-id": msg_id,
                        "webhook-timestamp": str(int(stamp.timestamp())),
                        "webhook-signature": domain.signature_header([secret], msg_id, stamp, body),
                    }
                    for attempt in range(3):  # as the workers do: a dropped connection is tried again
                        try:
                            response = await client.post(f"http://127.0.0.1:{port}/e{e}", content=body, headers=headers)
                            break
                        except httpx.TransportError:
                            if attempt == 2:
                                raise
                    response.raise_for_status()
                    latencies.append(time.perf_counter() - t0)

            await asyncio.gather(*(endpoint(e) for e in range(args.endpoints)))
            elapsed = time.perf_counter() - t0
    finally:
        server.should_exit = True
        await task
    return {
        "base_hooks_per_s": len(latencies) / elapsed,
        "base_hook_p50_ms": pct(latencies, 50) * 1000,
        "base_hook_p99_ms": pct(latencies, 99) * 1000,
    }


async def baseline_kafka(args: argparse.Namespace, bootstrap: str, run: int) -> dict[str, Any]:
    """The same events through Kafka to one raw aiokafka consumer (no projection, no fan-out)."""
    from aiokafka import AIOKafkaConsumer

    from distretto_shared.contracts import membership as ms
    from distretto_shared.topics import ensure_topics, topic_name

    os.environ["DISTRETTO_TOPIC_PREFIX"] = f"benchraw{uuid.uuid4().hex[:8]}."
    await ensure_topics(bootstrap, [ms.ORGANISATION_TOPIC])
    topic = topic_name(ms.ORGANISATION_TOPIC.name)
    from distretto_shared.kafka_security import default_credentials

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        **default_credentials().aiokafka(),
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=500)  # assignment done before the burst
        events = joined_events(args.events, run)
        sent, _ = await publish_timed(bootstrap, events)
        t0 = min(sent.values())
        latencies: list[float] = []
        last = t0
        deadline = time.perf_counter() + 60
        while len(latencies) < len(events) and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    latencies.append(now - sent[record.key.decode()])
                    last = now
    finally:
        await consumer.stop()
    return {
        "raw_kafka_per_s": len(latencies) / max(last - t0, 1e-9),
        "raw_kafka_p50_ms": pct(latencies, 50) * 1000,
        "raw_kafka_p99_ms": pct(latencies, 99) * 1000,
    }


async def main_async(args: argparse.Namespace) -> None:
    import distretto_dev.testing  # noqa: F401  (one identity key ring for this run's processes)

    with tempfile.TemporaryDirectory(prefix="bench-partners-") as tmp:
        workdir = Path(tmp)
        broker = None
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        if not bootstrap:
            from distretto_dev.kafka_runner import EmbeddedKafka

            broker = await asyncio.to_thread(EmbeddedKafka(data_dir=workdir / "kafka", heap="512m").start)
            bootstrap = broker.bootstrap_servers
            os.environ.update(broker.credentials.env())  # this run's clients and processes: its super user
        try:
            runs = []
            for run in range(args.runs):
                result = await one_run(args, bootstrap, run, workdir)
                runs.append(result)
                print(json.dumps({"run": run + 1, **{k: round(v, 1) for k, v in result.items()}}), flush=True)
        finally:
            if broker is not None:
                await asyncio.to_thread(broker.stop)
    report(args, runs)


def report(args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    def mmm(key: str) -> str:
        values = [r[key] for r in runs]
        return f"{min(values):9.1f} {statistics.median(values):9.1f} {max(values):9.1f}"

    print(
        f"\n{args.events} events → {args.endpoints} webhook endpoints and {args.clients} SSE clients; "
        f"{args.runs} runs (min / median / max); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'':44} {'min':>9} {'median':>9} {'max':>9}")
    for label, key in [
        ("webhooks: deliveries/s (partners)", "hooks_per_s"),
        ("webhooks: latency p50 ms (partners)", "hook_p50_ms"),
        ("webhooks: latency p99 ms (partners)", "hook_p99_ms"),
        ("webhooks: deliveries/s (bare httpx POSTs)", "base_hooks_per_s"),
        ("webhooks: latency p50 ms (bare httpx)", "base_hook_p50_ms"),
        ("webhooks: latency p99 ms (bare httpx)", "base_hook_p99_ms"),
        ("SSE: events delivered/s (partners)", "sse_per_s"),
        ("SSE: latency p50 ms (partners)", "sse_p50_ms"),
        ("SSE: latency p99 ms (partners)", "sse_p99_ms"),
        ("Kafka: events/s (one raw aiokafka consumer)", "raw_kafka_per_s"),
        ("Kafka: latency p50 ms (raw aiokafka)", "raw_kafka_p50_ms"),
        ("Kafka: latency p99 ms (raw aiokafka)", "raw_kafka_p99_ms"),
    ]:
        print(f"{label:44} {mmm(key)}")
    hooks = statistics.median(r["hooks_per_s"] / r["base_hooks_per_s"] for r in runs)
    sse = statistics.median(r["sse_per_s"] / r["raw_kafka_per_s"] for r in runs)
    print(f"ratio webhooks partners / bare client (median): {hooks:.3f}")
    print(f"ratio SSE deliveries/s / raw consumer events/s (median): {sse:.2f}")
    complete = all(r["hooks"] == r["hooks_expected"] and r["sse"] == r["sse_expected"] for r in runs)
    print("every delivery arrived in every run" if complete else "SOME DELIVERIES MISSING: see the runs above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
