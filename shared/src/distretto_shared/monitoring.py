# Over 600 lines: the panel list, the target list, the alert rules and the file generators must stay
# side by side (one list drives Prometheus, Grafana and the console, so they cannot drift), plus the
# test Prometheus runner that reads them; splitting the runner out is the planned step.
"""The monitoring stack's configuration, generated from one list, and a Prometheus runner.

One list of scrape targets (:data:`TARGETS`) and one set of alert rules
(:func:`alert_rules`) produce every variant, so they cannot drift:

- ``make up``: ``var/monitoring/`` — Prometheus (Debian's ``/usr/bin/prometheus``) and
  Alertmanager (``/usr/bin/prometheus-alertmanager``) on loopback, scraping every process of
  the stack on ``127.0.0.1``; Alertmanager sends to the platform's alert receiver
  (:mod:`distretto_dev.alert_receiver`) and, when ``DISTRETTO_ALERT_EMAIL`` is set, by
  mail through the platform's SMTP server;
- docker compose: ``deploy/prometheus/prometheus.yml`` and ``alerts.yml`` (compose host names);
- Kubernetes: ``deploy/kubernetes/prometheus-config.yaml`` (a ConfigMap; Service DNS names).

``python deploy/monitoring.py`` writes the files in ``deploy/``; ``--check`` fails if a
committed file differs from what the generator makes (``make test`` runs it).

:class:`PrometheusServer` starts a real Prometheus on a free port with a short scrape and
evaluation interval — the alert tests use it to prove each rule fires.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS_BIN = os.environ.get("DISTRETTO_PROMETHEUS_BIN", "/usr/bin/prometheus")
PROMTOOL_BIN = os.environ.get("DISTRETTO_PROMTOOL_BIN", "/usr/bin/promtool")
ALERTMANAGER_BIN = os.environ.get("DISTRETTO_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9193
"""Not Alertmanager's usual 9093: the embedded Kafka's controller listens there."""
RECEIVER_PORT = 9095


@dataclass(frozen=True)
class Target:
    """A process Prometheus scrapes: its job name, its port, and whether it is a platform service."""

    job: str
    port: int
    service: bool = True


TARGETS: tuple[Target, ...] = (
    Target("membership", 8001),
    Target("projects", 8002),
    Target("newsletter", 8003),
    Target("matchmaking", 8004),
    Target("console", 8005),
    Target("partners", 8006),
    Target("gateway", 8080),
    Target("prometheus", PROMETHEUS_PORT, service=False),
)
"""Every process scraped, in every variant (compose host = job name; Kubernetes Service = job name)."""

SERVICE_JOBS = tuple(t.job for t in TARGETS if t.service)


@dataclass(frozen=True)
class Thresholds:
    """The numbers of the alert rules; the tests shrink the durations, production keeps these."""

    dead_letter_window: str = "10m"
    backlog_age_seconds: float = 60
    lag_records: int = 1000
    lag_for: str = "1m"
    not_ready_for: str = "30s"
    delivery_failure_ratio: float = 0.05
    delivery_window: str = "5m"
    delivery_for: str = "1m"
    error_ratio: float = 0.05
    error_for: str = "5m"
    service_jobs: tuple[str, ...] = SERVICE_JOBS


def alert_rules(t: Thresholds | None = None) -> dict[str, Any]:
    """The platform's alert rules (Prometheus rule-file document)."""
    t = t or Thresholds()
    jobs = "|".join(t.service_jobs)
    window = t.delivery_window
    failed = f'sum(increase(distretto_newsletter_emails_failed_total{{kind="campaign"}}[{window}]))'
    sent = f'sum(increase(distretto_newsletter_emails_sent_total{{kind="campaign"}}[{window}]))'

    def rule(name: str, expr: str, summary: str, description: str, severity: str, for_: str | None = None) -> Any:
        r: dict[str, Any] = {"alert": name, "expr": " ".join(expr.split())}
        if for_ and for_ not in ("0s", "0"):
            r["for"] = for_
        r["labels"] = {"severity": severity}
        r["annotations"] = {"summary": summary, "description": description}
        return r

    return {
        "groups": [
            {
                "name": "distretto-services",
                "rules": [
                    rule(
                        "ServiceNotReady",
                        f'up{{job=~"{jobs}"}} == 0 or distretto_service_ready == 0',
                        "{{ $labels.job }} {{ $labels.service }} is down or not ready",
                        "Prometheus cannot scrape it, or its /readyz checks (database, broker, relay) fail.",
                        "critical",
                        t.not_ready_for,
                    ),
                    rule(
                        "HighServerErrorRate",
                        'sum by (service) (rate(distretto_http_requests_total{status=~"5.."}[5m]))\n'
                        f"  / sum by (service) (rate(distretto_http_requests_total[5m])) > {t.error_ratio}",
                        "{{ $labels.service }}: more than " + f"{t.error_ratio:.0%}" + " of HTTP requests answer 5xx",
                        "5xx share over 5 minutes is {{ $value | humanizePercentage }}.",
                        "warning",
                        t.error_for,
                    ),
                    rule(
                        "GatewayUpstreamErrors",
                        "sum by (upstream, kind) (rate(distretto_gateway_upstream_errors_total[5m])) > 0.1",
                        "gateway: {{ $labels.upstream }} failing ({{ $labels.kind }})",
                        "The gateway sees {{ $value }} upstream failures per second.",
                        "warning",
                        "5m",
                    ),
                ],
            },
            {
                "name": "distretto-events",
                "rules": [
                    rule(
                        "DeadLetters",
                        "sum by (service, consumer, topic, reason) "
                        f"(increase(distretto_dead_letters_total[{t.dead_letter_window}])) > 0",
                        "{{ $labels.service }}/{{ $labels.consumer }}: records of {{ $labels.topic }} dead-lettered",
                        "Reason {{ $labels.reason }}. See them with `distretto dlq list {{ $labels.topic }}`;"
                        " replay to the group that failed or discard with a reason.",
                        "warning",
                    ),
                    rule(
                        "OutboxBacklogStale",
                        f"max by (service) (distretto_outbox_oldest_age_seconds) > {t.backlog_age_seconds:g}",
                        "{{ $labels.service }}: an event has waited in the outbox for {{ $value | humanizeDuration }}",
                        "The relay is not publishing: is Kafka reachable? See /readyz and the service's log.",
                        "warning",
                    ),
                    rule(
                        "OutboxPublishErrors",
                        "sum by (service) (increase(distretto_outbox_publish_errors_total[10m])) > 0",
                        "{{ $labels.service }}: the outbox relay fails to publish",
                        "{{ $value }} failed publish attempts in 10 minutes.",
                        "warning",
                        "5m",
                    ),
                    rule(
                        "ConsumerLagHigh",
                        f"sum by (service, consumer, topic) (distretto_consumer_lag) > {t.lag_records}",
                        "{{ $labels.service }}/{{ $labels.consumer }} is {{ $value }} records behind on "
                        "{{ $labels.topic }}",
                        "The consumer group does not keep up with its topic (or is stuck).",
                        "warning",
                        t.lag_for,
                    ),
                ],
            },
            {
                "name": "distretto-newsletter",
                "rules": [
                    rule(
                        "CampaignDeliveryFailing",
                        f"{failed}\n  / ({failed}\n     + {sent})\n  > {t.delivery_failure_ratio}",
                        "newsletter: {{ $value | humanizePercentage }} of campaign mails fail",
                        "Check the SMTP servers (NEWSLETTER_SMTP_SERVERS) and the failed deliveries' replies.",
                        "warning",
                        t.delivery_for,
                    ),
                ],
            },
        ]
    }


# -- Prometheus and Alertmanager configuration ------------------------------------------------


def prometheus_config(
    addresses: dict[str, list[str]],
    *,
    rule_files: list[str],
    alertmanagers: list[str] | None = None,
    scrape_interval: str = "10s",
    evaluation_interval: str = "10s",
    credentials: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Prometheus configuration scraping ``addresses`` (job → ["host:port", …]); ``credentials``
    (job → file) sends ``Authorization: Bearer <the file's content>`` (read at every scrape)."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": rule_files,
    }
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]}
    config["scrape_configs"] = [
        {"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in addresses.items()
    ]
    for job_config in config["scrape_configs"]:
        file = (credentials or {}).get(job_config["job_name"])
        if file:
            job_config["authorization"] = {"type": "Bearer", "credentials_file": file}
    return config


def stack_addresses(host: str = "127.0.0.1") -> dict[str, list[str]]:
    """``make up``: every target on loopback, plus Alertmanager."""
    out = {t.job: [f"{host}:{t.port}"] for t in TARGETS}
    out["alertmanager"] = [f"{host}:{ALERTMANAGER_PORT}"]
    return out


def compose_addresses() -> dict[str, list[str]]:
    """docker compose: the compose service of the same name."""
    return {t.job: [f"{t.job}:{t.port}"] for t in TARGETS}


def kubernetes_addresses(namespace: str = "distretto") -> dict[str, list[str]]:
    """Kubernetes: the Service of the same name in ``namespace``."""
    return {t.job: [f"{t.job}.{namespace}.svc:{t.port}"] for t in TARGETS}


def alertmanager_config(
    webhook_url: str,
    *,
    email_to: str | None = None,
    smtp: str | None = None,
    email_from: str = "alerts@distretto.example",
    group_wait: str = "10s",
    group_interval: str = "1m",
    repeat_interval: str = "4h",
) -> dict[str, Any]:
    """Alertmanager: every alert to the platform's receiver; also by mail when ``email_to`` is set."""
    receiver: dict[str, Any] = {
        "name": "platform",
        "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
    }
    if email_to and smtp:
        receiver["email_configs"] = [
            {"to": email_to, "from": email_from, "smarthost": smtp, "require_tls": False, "send_resolved": True}
        ]
    return {
        "route": {
            "receiver": "platform",
            "group_by": ["alertname", "service"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [receiver],
    }


HEADER = "# Generated by deploy/monitoring.py from distretto_shared.monitoring: do not edit; regenerate.\n"


def dump(doc: Any) -> str:
    """YAML as the generated files are written."""
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True)


def deploy_files(root: Path) -> dict[Path, str]:
    """The committed files: compose's Prometheus configuration and rules, Kubernetes' ConfigMap, Grafana's
    dashboard (from :data:`PANELS`, the console's operations charts)."""
    rules = dump(alert_rules())
    compose = dump(prometheus_config(compose_addresses(), rule_files=["alerts.yml"]))
    k8s_prometheus = prometheus_config(kubernetes_addresses(), rule_files=["/etc/prometheus/alerts.yml"])
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "prometheus-config", "namespace": "distretto"},
        "data": {
            "prometheus.yml": yaml.safe_dump(k8s_prometheus, sort_keys=False, width=120),
            "alerts.yml": yaml.safe_dump(alert_rules(), sort_keys=False, width=120),
        },
    }
    return {
        root / "deploy" / "prometheus" / "alerts.yml": rules,
        root / "deploy" / "prometheus" / "prometheus.yml": compose,
        root / "deploy" / "kubernetes" / "prometheus-config.yaml": dump(configmap),
        root / "deploy" / "grafana" / "dashboards" / "distretto.json": json.dumps(grafana_dashboard(), indent=2) + "\n",
    }


def stack_files(
    folder: Path, *, email_to: str | None = None, smtp: str | None = None, gateway_key_file: str | None = None
) -> dict[Path, str]:
    """``make up``'s files in ``folder`` (var/monitoring); ``gateway_key_file`` holds the operator API
    key the scrape of the gateway's /metrics presents."""
    return {
        folder / "alerts.yml": dump(alert_rules()),
        folder / "prometheus.yml": dump(
            prometheus_config(
                stack_addresses(),
                rule_files=["alerts.yml"],  # beside this file
                alertmanagers=[f"127.0.0.1:{ALERTMANAGER_PORT}"],
                credentials={"gateway": gateway_key_file} if gateway_key_file else None,
            )
        ),
        folder / "alertmanager.yml": dump(
            alertmanager_config(f"http://127.0.0.1:{RECEIVER_PORT}/alerts", email_to=email_to, smtp=smtp)
        ),
    }


def write(files: dict[Path, str]) -> None:
    """Write generated files (folders created)."""
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``promtool`` (Debian's package)."""
    return subprocess.run([PROMTOOL_BIN, *args], capture_output=True, text=True, timeout=120, check=False)


# -- a real Prometheus for tests ------------------------------------------------------------

_LIVE: set[PrometheusServer] = set()


def die_with_parent() -> None:
    """In a child before exec (``preexec_fn``): the kernel sends it SIGTERM when the process that
    started it dies, even by SIGKILL — a test run that is killed leaves no Prometheus behind.
    Linux only (``prctl(PR_SET_PDEATHSIG)``); a no-op elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1


@atexit.register
def _stop_live() -> None:
    """A test process that exits without reaching a ``finally`` (an interpreter exit) stops its servers."""
    for server in list(_LIVE):
        server.stop()


@dataclass(eq=False)
class PrometheusServer:
    """Debian's Prometheus on a free loopback port, with the given targets and rules."""

    addresses: dict[str, list[str]]
    rules: dict[str, Any]
    interval: str = "1s"
    port: int = 0
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prometheus-")))
    alertmanagers: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> PrometheusServer:
        import httpx

        self.port = self.port or _free_port()
        write({self.folder / "alerts.yml": dump(self.rules)})
        config = prometheus_config(
            self.addresses,
            rule_files=[str(self.folder / "alerts.yml")],
            alertmanagers=self.alertmanagers or None,
            scrape_interval=self.interval,
            evaluation_interval=self.interval,
        )
        write({self.folder / "prometheus.yml": dump(config)})
        with (self.folder / "prometheus.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS_BIN,
                    f"--config.file={self.folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.format=json",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        _LIVE.add(self)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            async with httpx.AsyncClient() as client:
                while asyncio.get_running_loop().time() < deadline:
                    if self.proc.poll() is not None:
                        log_text = (self.folder / "prometheus.log").read_text()[-2000:]
                        raise RuntimeError(f"prometheus exited: {log_text}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(self.url + "/-/ready", timeout=2)).status_code == 200:
                            return self
                    await asyncio.sleep(0.2)
            raise RuntimeError("prometheus not ready in time")
        except BaseException:  # not ready, or the test was cancelled/interrupted while waiting
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the process (SIGTERM to its group, SIGKILL after 15 s) and remove its folder; idempotent."""
        _LIVE.discard(self)
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    async def api(self, path: str, **params: str) -> Any:
        import httpx

        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            r = await client.get("/api/v1/" + path, params=params)
            r.raise_for_status()
            return r.json()["data"]

    async def firing(self, name: str) -> list[dict[str, Any]]:
        """The alerts named ``name`` in state ``firing``, as Prometheus' API reports them."""
        alerts = (await self.api("alerts"))["alerts"]
        return [a for a in alerts if a["labels"].get("alertname") == name and a["state"] == "firing"]


@contextlib.asynccontextmanager
async def prometheus(
    addresses: dict[str, list[str]], thresholds: Thresholds, **kw: Any
) -> AsyncIterator[PrometheusServer]:
    """A started :class:`PrometheusServer` with the platform's rules at ``thresholds``."""
    server = await PrometheusServer(addresses, alert_rules(thresholds), **kw).start()
    try:
        yield server
    finally:
        server.stop()


def fast_thresholds(**kw: Any) -> Thresholds:
    """Production's rules with durations short enough for a test (each named value overrides)."""
    fast = Thresholds(
        dead_letter_window="1m",
        backlog_age_seconds=2,
        lag_records=5,
        lag_for="0s",
        not_ready_for="0s",
        delivery_window="1m",
        delivery_for="0s",
    )
    return replace(fast, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app over real HTTP on a free loopback port, in this event loop; yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{port}")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 30)


# -- panels: the console's operations charts and the Grafana dashboard, from one list ------------

RATE_WINDOW = "$__rate_interval"
"""Grafana's rate window in the panel expressions; the console reads them with :data:`CONSOLE_RATE_WINDOW`."""
CONSOLE_RATE_WINDOW = "5m"
SERVICE_FILTER = 'service=~"$service"'
"""The dashboard's service selector; the console reads every service (``.*``)."""
DATASOURCE = {"type": "prometheus", "uid": "distretto-prometheus"}


@dataclass(frozen=True)
class Query:
    """One series query of a panel: PromQL and its legend (Grafana's ``{{label}}`` template)."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """A chart: shown on the console's operations page when ``console`` is true, always in Grafana."""

    key: str
    section: str
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    console: bool = True

    def promql(self, query: Query) -> str:
        """``query`` as the console sends it to Prometheus (every service, a fixed rate window)."""
        return query.expr.replace(RATE_WINDOW, CONSOLE_RATE_WINDOW).replace("$service", ".*")


def _rate(metric: str, by: str, extra: str = "") -> str:
    selector = SERVICE_FILTER + (f",{extra}" if extra else "")
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{RATE_WINDOW}]))"


def _quantile(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}{{{SERVICE_FILTER}}}[{RATE_WINDOW}])))"


OVERVIEW, HTTP, EVENTS, MAIL, GATEWAY_ROW = (
    "Overview",
    "HTTP",
    "Events: outbox, consumers, dead letters",
    "Newsletter delivery",
    "Gateway and domain",
)

PANELS: tuple[Panel, ...] = (
    Panel(
        "services_up",
        OVERVIEW,
        "Services up",
        (Query('up{job=~"' + "|".join(t.job for t in TARGETS if t.service) + '"}', "{{job}}"),),
        kind="stat",
        console=False,  # the console lists the services with their readiness instead
    ),
    Panel(
        "backlog_total",
        OVERVIEW,
        "Outbox backlog",
        (Query(f"sum(distretto_outbox_backlog{{{SERVICE_FILTER}}})", "rows"),),
        kind="stat",
        console=False,
    ),
    Panel(
        "dead_letters_24h",
        OVERVIEW,
        "Dead letters (24h)",
        (Query(f"sum(increase(distretto_dead_letters_total{{{SERVICE_FILTER}}}[24h]))", "messages"),),
        kind="stat",
        console=False,  # the console lists every dead letter
    ),
    Panel(
        "http_rate",
        HTTP,
        "Requests per second by service",
        (Query(_rate("distretto_http_requests_total", "service"), "{{service}}"),),
        unit="reqps",
    ),
    Panel(
        "http_errors",
        HTTP,
        "5xx and 4xx per second",
        (
            Query(_rate("distretto_http_requests_total", "service", 'status=~"5.."'), "{{service}} 5xx"),
            Query(_rate("distretto_http_requests_total", "service", 'status=~"4.."'), "{{service}} 4xx"),
        ),
        unit="reqps",
    ),
    Panel(
        "http_latency",
        HTTP,
        "Latency p95 by service",
        (Query(_quantile(0.95, "distretto_http_request_duration_seconds_bucket", "service"), "{{service}} p95"),),
        unit="s",
    ),
    Panel(
        "http_latency_all",
        HTTP,
        "Latency p50 / p99 by service",
        (
            Query(_quantile(0.5, "distretto_http_request_duration_seconds_bucket", "service"), "{{service}} p50"),
            Query(_quantile(0.99, "distretto_http_request_duration_seconds_bucket", "service"), "{{service}} p99"),
        ),
        unit="s",
        console=False,
    ),
    Panel(
        "slowest_routes",
        HTTP,
        "Slowest routes (p95)",
        (
            Query(
                "topk(10, " + _quantile(0.95, "distretto_http_request_duration_seconds_bucket", "service, route") + ")",
                "{{service}} {{route}}",
            ),
        ),
        unit="s",
        console=False,
    ),
    Panel(
        "lag",
        EVENTS,
        "Consumer lag by group and topic",
        (Query(f"sum by (consumer, topic) (distretto_consumer_lag{{{SERVICE_FILTER}}})", "{{consumer}} {{topic}}"),),
    ),
    Panel(
        "backlog",
        EVENTS,
        "Outbox backlog",
        (Query(f"sum by (service) (distretto_outbox_backlog{{{SERVICE_FILTER}}})", "{{service}}"),),
    ),
    Panel(
        "publish_latency",
        EVENTS,
        "Outbox publish latency p95",
        (Query(_quantile(0.95, "distretto_outbox_publish_latency_seconds_bucket", "service"), "{{service}} p95"),),
        unit="s",
    ),
    Panel(
        "published",
        EVENTS,
        "Events published per second",
        (Query(_rate("distretto_outbox_published_total", "service"), "{{service}}"),),
        console=False,
    ),
    Panel(
        "handled",
        EVENTS,
        "Events handled per second",
        (Query(_rate("distretto_events_handled_total", "service, consumer"), "{{service}} {{consumer}}"),),
        console=False,
    ),
    Panel(
        "retries",
        EVENTS,
        "Retries, duplicates skipped",
        (
            Query(_rate("distretto_consumer_retries_total", "service, topic"), "{{service}} retries {{topic}}"),
            Query(
                _rate("distretto_inbox_duplicates_total", "service, consumer"), "{{service}} duplicates {{consumer}}"
            ),
        ),
        console=False,
    ),
    Panel(
        "dead_letters",
        EVENTS,
        "Dead letters by group and reason",
        (
            Query(
                f"sum by (consumer, topic, reason) (increase(distretto_dead_letters_total{{{SERVICE_FILTER}}}"
                f"[{RATE_WINDOW}]))",
                "{{consumer}} {{topic}} {{reason}}",
            ),
        ),
        console=False,
    ),
    Panel(
        "mail_rate",
        MAIL,
        "Mails per second",
        (
            Query(f"sum by (kind) (rate(distretto_newsletter_emails_sent_total[{RATE_WINDOW}]))", "sent {{kind}}"),
            Query(f"sum by (kind) (rate(distretto_newsletter_emails_failed_total[{RATE_WINDOW}]))", "failed {{kind}}"),
        ),
    ),
    Panel(
        "mail_other",
        MAIL,
        "Retries, bounces, queue depth",
        (
            Query(f"sum(rate(distretto_newsletter_emails_retried_total[{RATE_WINDOW}]))", "retried"),
            Query(f"sum by (kind) (rate(distretto_newsletter_bounces_total[{RATE_WINDOW}]))", "bounced {{kind}}"),
            Query("distretto_newsletter_queue_depth", "queue depth"),
            Query("distretto_newsletter_delivery_ratio", "delivery ratio"),
        ),
        console=False,
    ),
    Panel(
        "gateway_requests",
        GATEWAY_ROW,
        "Gateway requests by upstream and status",
        (
            Query(
                f"sum by (upstream, status) (rate(distretto_gateway_requests_total[{RATE_WINDOW}]))",
                "{{upstream}} {{status}}",
            ),
        ),
        unit="reqps",
        console=False,
    ),
    Panel(
        "gateway_refusals",
        GATEWAY_ROW,
        "Gateway refusals and upstream errors",
        (
            Query(f"sum by (bucket) (rate(distretto_gateway_rate_limited_total[{RATE_WINDOW}]))", "429 {{bucket}}"),
            Query(f"sum by (status) (rate(distretto_gateway_denied_total[{RATE_WINDOW}]))", "denied {{status}}"),
            Query(
                f"sum by (upstream, kind) (rate(distretto_gateway_upstream_errors_total[{RATE_WINDOW}]))",
                "{{upstream}} {{kind}}",
            ),
        ),
        unit="reqps",
        console=False,
    ),
    Panel(
        "domain",
        GATEWAY_ROW,
        "Members by status, matches by state",
        (
            Query("sum by (status) (distretto_membership_members)", "members {{status}}"),
            Query("sum by (state) (distretto_matchmaking_matches)", "matches {{state}}"),
        ),
        console=False,
    ),
)


def console_panels() -> list[Panel]:
    """The charts of the console's operations page, in order."""
    return [p for p in PANELS if p.console]


def grafana_dashboard() -> dict[str, Any]:
    """``deploy/grafana/dashboards/distretto.json`` from :data:`PANELS` (rows per section)."""
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = iter(range(1, 1000))
    sections = list(dict.fromkeys(p.section for p in PANELS))
    for section in sections:
        panels.append(
            {
                "type": "row",
                "title": section,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
                "id": next(next_id),
            }
        )
        y += 1
        members = [p for p in PANELS if p.section == section]
        per_row = 3 if len(members) % 3 == 0 or len(members) > 4 else 2
        width, height = 24 // per_row, 4 if all(p.kind == "stat" for p in members) else 8
        for i, panel in enumerate(members):
            panels.append(
                {
                    "type": panel.kind,
                    "title": panel.title,
                    "datasource": DATASOURCE,
                    "gridPos": {"h": height, "w": width, "x": (i % per_row) * width, "y": y + (i // per_row) * height},
                    "fieldConfig": {
                        "defaults": {"unit": panel.unit, "custom": {"lineWidth": 1, "fillOpacity": 10}},
                        "overrides": [],
                    },
                    "options": {
                        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"},
                    },
                    "targets": [
                        {"datasource": DATASOURCE, "refId": chr(ord("A") + n), "expr": q.expr, "legendFormat": q.legend}
                        for n, q in enumerate(panel.queries)
                    ],
                    "id": next(next_id),
                }
            )
        y += ((len(members) + per_row - 1) // per_row) * height
    variable = "label_values(distretto_http_requests_total, service)"
    return {
        "uid": "distretto-overview",
        "title": "Distretto",
        "description": "Generated by deploy/monitoring.py from distretto_shared.monitoring.PANELS (the console's "
        "operations charts come from the same list): do not edit by hand",
        "tags": ["distretto"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "service",
                    "label": "Service",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": variable, "refId": "service"},
                    "definition": variable,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "refresh": 2,
                    "sort": 1,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }
