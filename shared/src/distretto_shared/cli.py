# Over 600 lines: one Typer app holding every operator command (status, dlq, kafka, logs, imports); each
# command is short and they share the console output, the stack file and the credential loading. A
# package per command group is the planned split.
"""``distretto``: the operator's command line (Typer + Rich).

    distretto status                         every process, readiness, lag, backlog, firing alerts
    distretto dlq list [TOPIC]               dead letters per topic and consumer group
    distretto dlq show TOPIC OFFSET          one entry: reason, headers, body
    distretto dlq replay TOPIC [--offset N]  back to the one consumer group that failed
    distretto dlq discard TOPIC --offset N --reason "…"
    distretto kafka start|stop|status        the embedded broker of `make up`
    distretto logs SERVICE [-f]              a process's JSON log, pretty-printed (kafka: the broker's)
    distretto logs --check                   every log file of the stack: any line that is not JSON?
    distretto import members FILE.csv        organisations into the register, through the gateway
    distretto import cordis PROJECT.csv [ORGANIZATION.csv]   a CORDIS export into projects

After ``make up``, ``source var/env.sh`` puts it on PATH (or run ``var/bin/distretto``). It reads
``DISTRETTO_HOME`` (the checkout; default: the current folder), ``KAFKA_BOOTSTRAP_SERVERS`` and
``DISTRETTO_PROMETHEUS_URL`` (default ``http://127.0.0.1:9090``). Imports go through the gateway
(``DISTRETTO_GATEWAY_URL``, default ``http://127.0.0.1:8080``) as a staff or admin user:
``--email`` with ``DISTRETTO_PASSWORD`` (asked for when not set), or ``DISTRETTO_TOKEN`` (a token
or an API key, sent as the bearer), or ``DISTRETTO_API_KEY``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.syntax import Syntax
from rich.table import Table

from distretto_shared import dlq as dead_letters

app = typer.Typer(help="Operate a Distretto installation.", no_args_is_help=True, add_completion=False)
dlq_app = typer.Typer(help="Dead letters: list, show, replay to the group that failed, discard.", no_args_is_help=True)
kafka_app = typer.Typer(help="The embedded Kafka broker of `make up`.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(kafka_app, name="kafka")
import_app = typer.Typer(help="Imports through the gateway, with a progress bar.", no_args_is_help=True)
app.add_typer(import_app, name="import")

console = Console()
err = Console(stderr=True)


def home() -> Path:
    """The checkout the installation runs from."""
    return Path(os.environ.get("DISTRETTO_HOME") or Path.cwd())


def bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def prometheus_url() -> str:
    return os.environ.get("DISTRETTO_PROMETHEUS_URL", "http://127.0.0.1:9090").rstrip("/")


@dataclass
class Process:
    name: str
    url: str
    ready_path: str
    log: Path


DEFAULT_PROCESSES = [
    ("catcher", 8025, "/"),
    ("membership", 8001, "/readyz"),
    ("projects", 8002, "/readyz"),
    ("newsletter", 8003, "/readyz"),
    ("matchmaking", 8004, "/readyz"),
    ("console", 8005, "/readyz"),
    ("partners", 8006, "/readyz"),
    ("gateway", 8080, "/readyz"),
    ("alerts", 9095, "/healthz"),
    ("alertmanager", 9193, "/-/ready"),
    ("prometheus", 9090, "/-/ready"),
]


def processes() -> list[Process]:
    """The processes of the stack, as `make up` recorded them (var/run/stack.json)."""
    recorded = home() / "var" / "run" / "stack.json"
    if recorded.is_file():
        return [Process(p["name"], p["url"], p["ready_path"], Path(p["log"])) for p in json.loads(recorded.read_text())]
    log = home() / "var" / "log"
    return [Process(n, f"http://127.0.0.1:{port}", path, log / f"{n}.log") for n, port, path in DEFAULT_PROCESSES]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]distretto:[/red] {message}")
    return typer.Exit(code)


# -- status ------------------------------------------------------------------------------


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


@app.command()
def status() -> None:
    """Every process (readiness), consumer lag, outbox backlog, pending dead letters, firing alerts."""
    table = Table(title="Processes", title_justify="left")
    for col in ("process", "state", "url", "detail"):
        table.add_column(col)
    lag = Table(title="Consumer lag (records behind)", title_justify="left")
    for col in ("service", "consumer group", "topic", "lag"):
        lag.add_column(col)
    backlog = Table(title="Outbox", title_justify="left")
    for col in ("service", "unpublished", "oldest (s)"):
        backlog.add_column(col)
    with httpx.Client(timeout=3) as client:
        for p in processes():
            try:
                r = client.get(p.url + p.ready_path)
                ok = r.status_code == 200
                detail = "" if ok else _failed_checks(r)
                table.add_row(p.name, "[green]ready[/]" if ok else "[yellow]not ready[/]", p.url, detail)
            except httpx.HTTPError as exc:
                table.add_row(p.name, "[red]down[/]", p.url, type(exc).__name__)
                continue
            if p.ready_path != "/readyz":
                continue
            try:
                samples = _samples(client.get(p.url + "/metrics").text)
            except (httpx.HTTPError, ValueError):
                continue
            lags: dict[tuple[str, str, str], float] = {}
            for name, labels, value in samples:
                if name == "distretto_consumer_lag":
                    key = (labels.get("service", ""), labels.get("consumer", ""), labels.get("topic", ""))
                    lags[key] = lags.get(key, 0) + value
                elif name == "distretto_outbox_backlog":
                    oldest = next(
                        (
                            v
                            for n, lab, v in samples
                            if n == "distretto_outbox_oldest_age_seconds" and lab.get("service") == labels["service"]
                        ),
                        0.0,
                    )
                    age = f"[red]{oldest:.1f}[/]" if oldest > 60 else f"{oldest:.1f}"
                    backlog.add_row(labels["service"], f"{value:.0f}", age)
            for (service, group, topic), value in sorted(lags.items()):
                lag.add_row(service, group, topic, f"[red]{value:.0f}[/]" if value > 1000 else f"{value:.0f}")
        kafka_state = _kafka_state()
    table.add_row("kafka", "[green]ready[/]" if kafka_state is None else "[red]down[/]", bootstrap(), kafka_state or "")
    console.print(table)
    console.print(lag)
    console.print(backlog)
    if kafka_state is None:
        _pending_dead_letters()
    _firing_alerts()


def _failed_checks(r: httpx.Response) -> str:
    try:
        checks = r.json().get("checks", {})
    except ValueError:
        return f"HTTP {r.status_code}"
    return ", ".join(k for k, v in checks.items() if isinstance(v, dict) and not v.get("ok")) or f"HTTP {r.status_code}"


def _kafka_state() -> str | None:
    """None when the broker answers, else why not."""
    import socket

    host, _, port = bootstrap().split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return None
    except OSError as exc:
        return str(exc)


def _pending_dead_letters() -> None:
    async def collect() -> list[tuple[str, str, int]]:
        out: dict[tuple[str, str], int] = {}
        for topic in await dead_letters.dead_letter_topics(bootstrap()):
            for d in await dead_letters.list_dead_letters(bootstrap(), topic, status=dead_letters.PENDING):
                out[(topic, d.consumer)] = out.get((topic, d.consumer), 0) + 1
        return [(t, c, n) for (t, c), n in sorted(out.items())]

    try:
        rows = asyncio.run(collect())
    except Exception as exc:
        err.print(f"dead letters: cannot read them ({exc!r})")
        return
    table = Table(title="Dead letters pending", title_justify="left")
    for col in ("topic", "consumer group", "pending"):
        table.add_column(col)
    for topic, group, n in rows:
        table.add_row(topic, group, f"[red]{n}[/]")
    if not rows:
        table.add_row("—", "—", "0")
    console.print(table)


def _firing_alerts() -> None:
    try:
        alerts = httpx.get(prometheus_url() + "/api/v1/alerts", timeout=3).json()["data"]["alerts"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        err.print(f"alerts: Prometheus at {prometheus_url()} does not answer ({type(exc).__name__})")
        return
    table = Table(title="Alerts", title_justify="left")
    for col in ("alert", "state", "severity", "summary"):
        table.add_column(col)
    for a in sorted(alerts, key=lambda a: (a["state"], a["labels"].get("alertname", ""))):
        colour = "red" if a["state"] == "firing" else "yellow"
        table.add_row(
            a["labels"].get("alertname", ""),
            f"[{colour}]{a['state']}[/]",
            a["labels"].get("severity", ""),
            a.get("annotations", {}).get("summary", ""),
        )
    if not alerts:
        table.add_row("—", "[green]none firing[/]", "", "")
    console.print(table)


# -- dead letters --------------------------------------------------------------------------


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except (LookupError, ValueError) as exc:
        raise fail(str(exc)) from None


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str | None, typer.Argument(help="origin topic or its .dlq; every .dlq topic if omitted")] = None,
    consumer: Annotated[str | None, typer.Option(help="only this consumer group's entries")] = None,
    state: Annotated[str | None, typer.Option("--status", help="pending, replayed or discarded (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Dead letters per topic and consumer group, with their reason and state."""

    async def collect() -> list[dead_letters.DeadLetter]:
        topics = [topic] if topic else await dead_letters.dead_letter_topics(bootstrap())
        out: list[dead_letters.DeadLetter] = []
        for t in topics:
            out += await dead_letters.list_dead_letters(bootstrap(), t, consumer=consumer, status=state)
        return out

    letters = _run(collect())
    if as_json:
        for d in letters:
            print(json.dumps(d.summary(), default=str))
        return
    table = Table(title=f"Dead letters ({len(letters)})", title_justify="left")
    for col in ("dlq topic", "offset", "state", "consumer group", "kind", "reason", "dead-lettered"):
        table.add_column(col, overflow="fold")
    for d in letters:
        colour = {"pending": "red", "replayed": "green", "discarded": "dim"}.get(d.status, "")
        table.add_row(
            d.dlq_topic, str(d.offset), f"[{colour}]{d.status}[/]", d.consumer, d.kind, d.reason[:120], d.time[:19]
        )
    console.print(table)


@dlq_app.command("show")
def dlq_show(topic: str, offset: int) -> None:
    """One dead letter: its reason, headers, body and resolution."""
    found = [d for d in _run(dead_letters.list_dead_letters(bootstrap(), topic)) if d.offset == offset]
    if not found:
        raise fail(f"no dead letter at offset {offset} of {dead_letters.dlq_name(topic)}")
    d = found[0]
    console.print(
        Panel(
            f"[bold]{d.reason}[/]\n\nconsumer group: {d.consumer}   kind: {d.kind}   state: {d.status}\n"
            f"origin: {d.origin_topic} partition {d.headers.get('dlq_origin_partition')} "
            f"offset {d.headers.get('dlq_origin_offset')}   at {d.time}",
            title=f"{d.dlq_topic}@{d.offset}",
        )
    )
    headers = Table(title="Headers", title_justify="left")
    headers.add_column("name")
    headers.add_column("value", overflow="fold")
    for k, v in d.headers.items():
        headers.add_row(k, v)
    console.print(headers)
    body = d.body()
    text = json.dumps(body, indent=2, ensure_ascii=False) if not isinstance(body, str) else body
    console.print(Panel(Syntax(text, "json", word_wrap=True), title="Body"))
    if d.resolution:
        console.print(Panel(json.dumps(d.resolution, indent=2), title="Resolution"))


def _progress(total: int, what: str) -> Progress:
    progress = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), console=console, transient=False)
    return progress


@dlq_app.command("replay")
def dlq_replay(
    topic: str,
    offset: Annotated[list[int] | None, typer.Option("--offset", help="only this DLQ offset (repeatable)")] = None,
    consumer: Annotated[str | None, typer.Option(help="only this consumer group's entries")] = None,
) -> None:
    """Send pending dead letters back to the one consumer group that failed each."""
    pending = _run(dead_letters.list_dead_letters(bootstrap(), topic, consumer=consumer, status=dead_letters.PENDING))
    total = len(offset) if offset else len(pending)
    with _progress(total, "replaying") as progress:
        task = progress.add_task("replay", total=total)
        done = _run(
            dead_letters.replay(
                bootstrap(), topic, offsets=offset, consumer=consumer, progress=lambda _d: progress.advance(task)
            )
        )
    console.print(f"replayed {len(done)} dead letter(s) from {dead_letters.dlq_name(topic)}")
    for d in done:
        console.print(f"  {d.dlq_topic}@{d.offset} → {d.consumer}")


@dlq_app.command("discard")
def dlq_discard(
    topic: str,
    reason: Annotated[str, typer.Option(help="why (recorded with each entry)")],
    offset: Annotated[list[int] | None, typer.Option("--offset", help="only this DLQ offset (repeatable)")] = None,
    consumer: Annotated[str | None, typer.Option(help="only this consumer group's entries")] = None,
) -> None:
    """Close pending dead letters without replaying them, with the reason recorded."""
    done = _run(dead_letters.discard(bootstrap(), topic, reason=reason, offsets=offset, consumer=consumer))
    console.print(f"discarded {len(done)} dead letter(s) of {dead_letters.dlq_name(topic)}")


# -- kafka -----------------------------------------------------------------------------------


def _kafka(command: str, timeout: float | None = None) -> int:
    try:
        import distretto_dev.kafka_runner as kafka_runner  # the embedded broker of `make up`: a development tool
    except ImportError as exc:
        raise fail("the embedded Kafka broker comes with the development tools (package distretto-dev)") from exc

    port = bootstrap().split(",")[0].rpartition(":")[2]
    args = [command, "--port", port, "--data-dir", str(home() / "var" / "kafka")]
    controller = os.environ.get("DISTRETTO_KAFKA_CONTROLLER_PORT")  # make up's, when it was not the default
    if controller and command == "start":
        args += ["--controller-port", controller]
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    return kafka_runner.main(args)


@kafka_app.command("start")
def kafka_start(
    timeout: Annotated[float, typer.Option(help="seconds to wait for the broker to answer")] = 90,
) -> None:
    """Start the broker (idempotent)."""
    raise typer.Exit(_kafka("start", timeout))


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker."""
    raise typer.Exit(_kafka("stop"))


@kafka_app.command("status")
def kafka_status() -> None:
    """Exit 0 when the broker runs and answers."""
    raise typer.Exit(_kafka("status"))


# -- logs --------------------------------------------------------------------------------------

LEVEL_STYLE = {
    "debug": "dim",
    "info": "cyan",
    "warn": "yellow",  # log4j's name (the Kafka broker)
    "warning": "yellow",
    "error": "red",
    "critical": "bold red",
    "fatal": "bold red",
}
LEAD = ("timestamp", "level", "event", "service", "exception", "logger")


def render(line: str) -> None:
    """One log line, pretty: time, level, event, then the other fields; a traceback below."""
    try:
        item = json.loads(line)
        assert isinstance(item, dict)
    except (ValueError, AssertionError):
        console.print(line.rstrip("\n"), markup=False, highlight=False)
        return
    level = str(item.get("level", ""))
    ts = str(item.get("timestamp", ""))[11:23]
    extras = " ".join(f"[dim]{k}[/]={json.dumps(v, ensure_ascii=False)}" for k, v in item.items() if k not in LEAD)
    style = LEVEL_STYLE.get(level, "")
    event = str(item.get("event", "")).replace("[", r"\[")
    console.print(f"[dim]{ts}[/] [{style}]{level[:5]:5}[/] {event} {extras}", highlight=False)
    if item.get("exception"):
        console.print(str(item["exception"]), style="red", markup=False, highlight=False)


def log_files() -> dict[str, Path]:
    """Every log file the stack writes: each process's, the Kafka broker's, and any other under var/log."""
    files = {p.name: p.log for p in processes()}
    files["kafka"] = home() / "var" / "kafka" / "server.log"
    for path in sorted((home() / "var" / "log").glob("*.log")):
        files.setdefault(path.stem, path)
    return files


def non_json_lines(path: Path) -> tuple[int, list[tuple[int, str]]]:
    """(lines read, [(line number, line) of every line that is not one JSON object])."""
    bad: list[tuple[int, str]] = []
    count = 0
    with path.open(errors="replace") as fh:
        for count, line in enumerate(fh, 1):
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            if not ok:
                bad.append((count, line.rstrip("\n")))
    return count, bad


def _check_logs() -> None:
    table = Table(title="Logs: one JSON object per line?", title_justify="left")
    for col in ("process", "file", "lines", "not JSON"):
        table.add_column(col)
    failures: list[str] = []
    checked = 0
    for name, path in log_files().items():
        if not path.is_file():
            table.add_row(name, str(path), "[dim]no file[/]", "")
            continue
        checked += 1
        count, bad = non_json_lines(path)
        table.add_row(name, str(path), str(count), f"[red]{len(bad)}[/]" if bad else "[green]0[/]")
        failures += [f"{path}:{n}: {line[:200]}" for n, line in bad[:5]]
    console.print(table)
    if not checked:
        raise fail(f"no log file under {home() / 'var'}: is DISTRETTO_HOME the checkout `make up` ran in?", 1)
    if failures:
        for failure in failures:
            err.print(failure, markup=False, highlight=False)
        raise typer.Exit(1)


@app.command()
def logs(
    service: Annotated[
        str | None, typer.Argument(help="a process of the stack: gateway, membership, … prometheus, kafka")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="how many of the last lines")] = 50,
    check: Annotated[
        bool, typer.Option("--check", help="scan every log file of the stack; exit 1 on a line that is not JSON")
    ] = False,
) -> None:
    """A process's log (one JSON object per line), pretty-printed; or --check all of them."""
    if check:
        _check_logs()
        return
    if service is None:
        raise fail("name a process (e.g. `distretto logs gateway -f`), or --check every log")
    known = log_files()
    path = known[service] if service in known else home() / "var" / "log" / f"{service}.log"
    if not path.is_file():
        raise fail(f"no log for {service!r} at {path} (known: {', '.join(sorted(known))})")
    with path.open(errors="replace") as fh:
        for line in fh.readlines()[-lines:] if lines > 0 else []:
            render(line)
        if not follow:
            return
        fh.seek(0, os.SEEK_END)
        try:
            while True:
                line = fh.readline()
                if line:
                    render(line)
                else:
                    time.sleep(0.3)
        except KeyboardInterrupt:
            return


# -- imports ---------------------------------------------------------------------------------

CHUNK = 64 * 1024


def gateway_url() -> str:
    return os.environ.get("DISTRETTO_GATEWAY_URL", "http://127.0.0.1:8080").rstrip("/")


def _credentials(client: httpx.Client, email: str | None) -> dict[str, str]:
    """Headers of a staff or admin caller: a login with --email, else DISTRETTO_TOKEN (a token from
    ``POST /auth/token`` or an API key, as the bearer — as the services' own import commands take it)
    or DISTRETTO_API_KEY."""
    token = (os.environ.get("DISTRETTO_TOKEN") or "").strip()
    key = (os.environ.get("DISTRETTO_API_KEY") or "").strip()
    if token and not email:
        return {"Authorization": f"Bearer {token}"}
    if key and not email:
        return {"X-API-Key": key}
    if not email:
        raise fail(
            "say who imports: --email (password from DISTRETTO_PASSWORD, or asked), or set DISTRETTO_TOKEN "
            "or DISTRETTO_API_KEY"
        )
    password = os.environ.get("DISTRETTO_PASSWORD") or typer.prompt(f"password of {email}", hide_input=True)
    try:
        r = client.post("/auth/token", json={"email": email, "password": password})
    except httpx.HTTPError as exc:
        raise fail(f"the gateway at {gateway_url()} does not answer ({type(exc).__name__})") from None
    if r.status_code != 200:
        raise fail(f"login refused ({r.status_code}): {_message(r)}")
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300] or f"HTTP {r.status_code}"
    if not isinstance(body, dict):
        return str(body)[:300]
    text = str(body.get("message") or body.get("detail") or body.get("error") or body)
    details = body.get("details") or body.get("errors")
    if isinstance(details, list) and details:
        text += "".join(f"\n  {json.dumps(d, ensure_ascii=False)}" for d in details[:20])
        if len(details) > 20:
            text += f"\n  … and {len(details) - 20} more"
    return text


def _upload(path: str, body: bytes, content_type: str, email: str | None, what: str) -> dict[str, Any]:
    """POST ``body`` to the gateway with a progress bar for the upload, then a spinner while the service works."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )

    def chunks(task: Any) -> Any:
        for start in range(0, len(body), CHUNK):
            piece = body[start : start + CHUNK]
            yield piece
            progress.advance(task, len(piece))
        progress.update(task, description=f"{what}: the service imports it (all rows or none)")

    with httpx.Client(base_url=gateway_url(), timeout=httpx.Timeout(10, read=600)) as client:
        headers = {**_credentials(client, email), "Content-Type": content_type}
        with progress:
            task = progress.add_task(f"{what}: uploading", total=len(body))
            try:
                r = client.post(path, content=chunks(task), headers=headers)
            except httpx.HTTPError as exc:
                raise fail(f"the gateway at {gateway_url()} failed ({type(exc).__name__}: {exc})") from None
            progress.update(task, completed=len(body), description=f"{what}: done ({r.status_code})")
    if r.status_code >= 300:
        raise fail(f"{what} refused ({r.status_code}), nothing imported: {_message(r)}")
    result = r.json()
    return result if isinstance(result, dict) else {}


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None


EmailOption = Annotated[
    str | None, typer.Option("--email", help="a staff or admin user (password: DISTRETTO_PASSWORD or asked)")
]


@import_app.command("members")
def import_members(
    file: Annotated[Path, typer.Argument(help="the CSV (columns: name, kind, sectors, …; an export imports back)")],
    email: EmailOption = None,
) -> None:
    """Organisations into the register from a CSV: every row or none."""
    result = _upload("/api/membership/organisations/import", _read(file), "text/csv", email, file.name)
    console.print(
        f"imported {result.get('imported', 0)} organisation(s): "
        f"{result.get('created', 0)} created, {result.get('updated', 0)} updated"
    )
    for w in result.get("warnings") or []:
        console.print(f"  [yellow]warning[/] {json.dumps(w, ensure_ascii=False)}", highlight=False)


@import_app.command("cordis")
def import_cordis(
    project: Annotated[Path, typer.Argument(help="CORDIS project.csv")],
    organization: Annotated[Path | None, typer.Argument(help="CORDIS organization.csv (participants)")] = None,
    email: EmailOption = None,
) -> None:
    """A CORDIS export (project.csv and organization.csv) into projects: all or nothing."""
    payload = {"project_csv": _read(project).decode("utf-8-sig", errors="replace")}
    if organization is not None:
        payload["organization_csv"] = _read(organization).decode("utf-8-sig", errors="replace")
    body = json.dumps(payload).encode()
    result = _upload("/api/projects/imports/cordis", body, "application/json", email, project.name)
    console.print(
        f"projects: {result.get('projects_created', 0)} created, {result.get('projects_updated', 0)} updated, "
        f"{result.get('projects_unchanged', 0)} unchanged; participants: "
        f"{result.get('participants_created', 0)} created, {result.get('participants_updated', 0)} updated, "
        f"{result.get('participants_linked', 0)} linked"
    )
    for w in result.get("warnings") or []:
        console.print(f"  [yellow]warning[/] {json.dumps(w, ensure_ascii=False)}", highlight=False)


if __name__ == "__main__":
    app()
