"""The platform's alert receiver: Alertmanager's webhook, kept as JSON lines, read back over HTTP.

``python -m distretto_dev.alert_receiver --port 9095 --file var/alerts/alerts.jsonl``

- ``POST /alerts``: Alertmanager's webhook (version 4); each alert of the notification is
  appended to the file as one JSON line (``received_at`` added) and kept in memory.
- ``GET /alerts``: the latest state of every alert (by fingerprint), newest first —
  ``?status=firing`` for those still firing. The console's operations pages read this.

Only loopback by default; it keeps no personal data (alerts carry labels and annotations).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from distretto_shared.logging import configure_logging, get_logger

log = get_logger(__name__)

MAX_BODY = 1024 * 1024


def create_app(file: Path) -> FastAPI:
    """The receiver's app, storing into ``file``."""
    app = FastAPI(title="Distretto alert receiver", docs_url=None, redoc_url=None)
    latest: dict[str, dict[str, Any]] = {}
    if file.is_file():
        for line in file.read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
                latest[item["fingerprint"]] = item
            except (ValueError, KeyError, TypeError):
                continue

    @app.post("/alerts", status_code=202)
    async def receive(request: Request) -> dict[str, int]:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise HTTPException(413, "notification too large")
        try:
            notification = json.loads(body)
            alerts = notification["alerts"]
            assert isinstance(alerts, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise HTTPException(422, "not an Alertmanager webhook notification (JSON with an 'alerts' list)") from None
        now = datetime.now(UTC).isoformat()
        lines = []
        for alert in alerts:
            if not isinstance(alert, dict) or "fingerprint" not in alert:
                continue
            fingerprint = str(alert["fingerprint"])
            item: dict[str, Any] = {
                "fingerprint": fingerprint,
                "status": str(alert.get("status", "")),
                "labels": alert.get("labels") or {},
                "annotations": alert.get("annotations") or {},
                "startsAt": alert.get("startsAt"),
                "endsAt": alert.get("endsAt"),
                "received_at": now,
            }
            latest[fingerprint] = item
            lines.append(json.dumps(item))
        if lines:
            file.parent.mkdir(parents=True, exist_ok=True)
            with file.open("a") as fh:
                fh.write("\n".join(lines) + "\n")
        log.info("alerts received", count=len(lines), status=notification.get("status"))
        return {"received": len(lines)}

    @app.get("/alerts")
    async def alerts(status: str | None = None) -> list[dict[str, Any]]:
        items = sorted(latest.values(), key=lambda a: a["received_at"], reverse=True)
        return [a for a in items if status is None or a["status"] == status]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="distretto-alert-receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--file", type=Path, default=Path("var") / "alerts" / "alerts.jsonl")
    args = parser.parse_args()
    configure_logging("alert-receiver")
    import uvicorn

    uvicorn.run(
        create_app(args.file), host=args.host, port=args.port, log_level="warning", access_log=False, log_config=None
    )


if __name__ == "__main__":
    main()
