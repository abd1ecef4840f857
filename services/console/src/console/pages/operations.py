"""Operations (admin and operator roles): readiness, lag, backlog, HTTP, mail delivery and alerts
read from Prometheus' HTTP API; dead letters from Kafka, replayed to the one consumer group that
failed or discarded with a reason (``distretto_shared.dlq``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import Response

from console.web import User, UserDep, page_router, redirect, render, settings_of
from distretto_shared import dlq, monitoring
from distretto_shared.kafka_security import KafkaCredentials
from distretto_shared.logging import get_logger

router = page_router()
log = get_logger(__name__)

QUERIES = {
    "up": "up",
    "ready": "distretto_service_ready",
    "lag": "sum by (service, consumer, topic) (distretto_consumer_lag)",
    "backlog": "distretto_outbox_backlog",
    "oldest": "distretto_outbox_oldest_age_seconds",
    "publish_p95": "histogram_quantile(0.95, sum by (service, le) "
    "(rate(distretto_outbox_publish_latency_seconds_bucket[5m])))",
    "http_rate": "sum by (service) (rate(distretto_http_requests_total[5m]))",
    "http_errors": 'sum by (service) (rate(distretto_http_requests_total{status=~"5.."}[5m]))',
    "http_p95": "histogram_quantile(0.95, sum by (service, le) "
    "(rate(distretto_http_request_duration_seconds_bucket[5m])))",
    "mail_sent": "sum by (kind) (rate(distretto_newsletter_emails_sent_total[15m]))",
    "mail_failed": "sum by (kind) (rate(distretto_newsletter_emails_failed_total[15m]))",
}
LAG_HISTORY = "sum by (consumer, topic) (distretto_consumer_lag)"
CHART_SECONDS = 1800  # the charts show the last 30 minutes
CHART_STEP = 30
CHART_SERIES = 12  # at most this many lines per chart (the highest last values)
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _legend(template: str, metric: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend template filled from a series' labels."""
    return _LEGEND.sub(lambda m: str(metric.get(m.group(1), "")), template)


def _chart(panel: monitoring.Panel, results: list[list[dict[str, Any]]], start: float) -> dict[str, Any]:
    """Chart.js line data (``data-series``) for one panel of ``monitoring.PANELS``, and the latest values."""
    steps = int(CHART_SECONDS // CHART_STEP) + 1
    stamps = [start + i * CHART_STEP for i in range(steps)]
    labels = [time.strftime("%H:%M", time.gmtime(t)) for t in stamps]
    lines: list[tuple[str, list[float | None]]] = []
    for query, series in zip(panel.queries, results, strict=True):
        for s in series:
            values: list[float | None] = [None] * steps
            for stamp, value in s.get("values", []):
                index = round((float(stamp) - start) / CHART_STEP)
                with contextlib.suppress(ValueError):
                    number = float(value)
                    if 0 <= index < steps and math.isfinite(number):
                        values[index] = number
            name = _legend(query.legend, s.get("metric", {}))
            lines.append((" ".join(name.split()) or panel.title, values))

    def last(values: list[float | None]) -> float:
        return next((v for v in reversed(values) if v is not None), 0.0)

    lines.sort(key=lambda line: (-last(line[1]), line[0]))
    lines = lines[:CHART_SERIES]
    data = {"labels": labels, "datasets": [{"label": n, "data": v, "spanGaps": True} for n, v in lines]}
    return {
        "key": panel.key,
        "section": panel.section,
        "title": panel.title,
        "unit": panel.unit,
        "series": json.dumps(data, separators=(",", ":")),
        "latest": [(n, last(v)) for n, v in lines if any(x is not None for x in v)],
    }


async def _prometheus(base: str) -> dict[str, Any]:
    """Every panel's series from Prometheus, or why not."""
    out: dict[str, Any] = {"error": None}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:

            async def query(q: str) -> list[dict[str, Any]]:
                r = await client.get("/api/v1/query", params={"query": q})
                r.raise_for_status()
                return list(r.json()["data"]["result"])

            async def history() -> list[dict[str, Any]]:
                end = time.time()
                params = {"query": LAG_HISTORY, "start": str(end - 1800), "end": str(end), "step": "60"}
                r = await client.get("/api/v1/query_range", params=params)
                r.raise_for_status()
                return list(r.json()["data"]["result"])

            end = time.time()
            start = end - CHART_SECONDS

            async def series(q: str) -> list[dict[str, Any]]:
                params = {"query": q, "start": str(start), "end": str(end), "step": str(CHART_STEP)}
                r = await client.get("/api/v1/query_range", params=params)
                r.raise_for_status()
                return list(r.json()["data"]["result"])

            panels = monitoring.console_panels()
            names = list(QUERIES)
            results = await asyncio.gather(
                *(query(QUERIES[n]) for n in names),
                history(),
                *(series(p.promql(q)) for p in panels for q in p.queries),
            )
            out.update(dict(zip(names, results[: len(names)], strict=True)))
            out["lag_history"] = results[len(names)]
            charted = iter(results[len(names) + 1 :])
            out["charts"] = [_chart(p, [next(charted) for _ in p.queries], start) for p in panels]
            r = await client.get("/api/v1/alerts")
            r.raise_for_status()
            out["alerts"] = [a for a in r.json()["data"]["alerts"] if a.get("state") == "firing"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        out["error"] = f"{base}: {type(exc).__name__}"
    return out


def _by(series: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    out = {}
    for s in series:
        with contextlib.suppress(ValueError, KeyError, IndexError):
            out[tuple(s["metric"].get(label, "") for label in labels)] = float(s["value"][1])
    return out


def _sparkline(values: list[float], width: int = 160, height: int = 28) -> str:
    """An inline SVG polyline of ``values`` (no script, no external file)."""
    if not values:
        return ""
    top = max(values) or 1.0
    step = width / max(1, len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in enumerate(values))
    return points


async def _dead_letters(
    bootstrap: str, credentials: KafkaCredentials | None = None
) -> tuple[list[dlq.DeadLetter], str | None]:
    try:
        async with asyncio.timeout(15):
            letters: list[dlq.DeadLetter] = []
            for topic in await dlq.dead_letter_topics(bootstrap, credentials):
                letters += await dlq.list_dead_letters(bootstrap, topic, credentials=credentials)
            return letters, None
    except Exception as exc:
        return [], f"Kafka: {type(exc).__name__}"


async def _page(request: Request, user: User, status: int = 200, **extra: Any) -> Response:
    settings = settings_of(request)
    prom, (letters, dlq_error) = await asyncio.gather(
        _prometheus(settings.prometheus_url),
        _dead_letters(settings.kafka_bootstrap_servers, settings.kafka_credentials()),
    )
    services = []
    if prom["error"] is None:
        up = _by(prom["up"], "job", "instance")
        ready = _by(prom["ready"], "service")
        rate, errors, p95 = (_by(prom[k], "service") for k in ("http_rate", "http_errors", "http_p95"))
        for (job, instance), value in sorted(up.items()):
            services.append(
                {
                    "job": job,
                    "instance": instance,
                    "up": value == 1,
                    "ready": ready.get((job,)),
                    "rate": rate.get((job,)),
                    "errors": errors.get((job,)),
                    "p95": p95.get((job,)),
                }
            )
        history: dict[tuple[str, ...], list[float]] = {
            (s["metric"].get("consumer", ""), s["metric"].get("topic", "")): [float(v) for _, v in s["values"]]
            for s in prom["lag_history"]
        }
        lag = [
            {"service": k[0], "consumer": k[1], "topic": k[2], "lag": v, "line": _sparkline(history.get(k[1:], []))}
            for k, v in sorted(_by(prom["lag"], "service", "consumer", "topic").items())
        ]
        oldest = _by(prom["oldest"], "service")
        p95_publish = _by(prom["publish_p95"], "service")
        backlog = [
            {"service": k[0], "rows": v, "oldest": oldest.get(k), "p95": p95_publish.get(k)}
            for k, v in sorted(_by(prom["backlog"], "service").items())
        ]
        sent, failed = _by(prom["mail_sent"], "kind"), _by(prom["mail_failed"], "kind")
        mail = [
            {"kind": k[0], "sent": sent.get(k, 0.0), "failed": failed.get(k, 0.0)} for k in sorted({*sent, *failed})
        ]
    else:
        lag, backlog, mail = [], [], []
    context = {
        "prometheus_error": prom["error"],
        "services": services,
        "lag": lag,
        "backlog": backlog,
        "mail": mail,
        "alerts": prom.get("alerts", []),
        "charts": [
            (section, [c for c in prom.get("charts", []) if c["section"] == section])
            for section in dict.fromkeys(c["section"] for c in prom.get("charts", []))
        ],
        "letters": sorted(letters, key=lambda d: (d.status != dlq.PENDING, d.dlq_topic, d.offset)),
        "dlq_error": dlq_error,
        "errors": {},
        "values": {},
        **extra,
    }
    return render(request, "operations/index.html", context, status=status)


@router.get("/operations")
async def index(request: Request, user: UserDep) -> Response:
    return await _page(request, user)


def _target(form: Any) -> tuple[str, int] | None:
    topic = str(form.get("topic", ""))
    try:
        offset = int(str(form.get("offset", "")))
    except ValueError:
        return None
    if not topic.endswith(".dlq") or len(topic) > 300 or offset < 0:
        return None
    return topic, offset


@router.post("/operations/dead-letters/replay")
async def replay(request: Request, user: UserDep) -> Response:
    target = _target(await request.form())
    if target is None:
        return await _page(request, user, 422, dlq_message="Choose a dead letter to replay.")
    try:
        done = await dlq.replay(settings_of(request).kafka_bootstrap_servers, target[0], offsets=[target[1]])
    except LookupError as exc:
        return await _page(request, user, 409, dlq_message=str(exc))
    log.info("dead letter replayed", topic=target[0], offset=target[1], to=done[0].consumer, role=user.role)
    return redirect(request, "/operations?replayed=1#dead-letters")


@router.post("/operations/dead-letters/discard")
async def discard(request: Request, user: UserDep) -> Response:
    form = await request.form()
    target = _target(form)
    reason = str(form.get("reason", "")).strip()[:2000]
    if target is None or not reason:
        values = {"topic": str(form.get("topic", "")), "offset": str(form.get("offset", ""))}
        return await _page(request, user, 422, errors={"reason": "Say why it is discarded."}, values=values)
    try:
        await dlq.discard(settings_of(request).kafka_bootstrap_servers, target[0], offsets=[target[1]], reason=reason)
    except LookupError as exc:
        return await _page(request, user, 409, dlq_message=str(exc))
    log.info("dead letter discarded", topic=target[0], offset=target[1], role=user.role)
    return redirect(request, "/operations?discarded=1#dead-letters")
