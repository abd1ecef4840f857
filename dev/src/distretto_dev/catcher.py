"""A mail catcher for local runs: an SMTP server that keeps every mail, and a page to read them.

    python -m distretto_dev.catcher --smtp-port 1025 --http-port 8025 [--folder var/mail]

Mails are kept in memory (the newest ``--keep``) and written as ``.eml`` files to the folder.
HTTP: ``/`` lists them, ``/messages/{n}`` shows one, ``/messages/{n}.eml`` is the raw mail,
``/api/messages`` (JSON, ``limit``/``offset``) and ``/api/messages/{n}``.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import html
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from distretto_shared.logging import configure_logging, get_logger


@dataclass
class CaughtMail:
    """One received mail."""

    number: int
    received_at: datetime
    mail_from: str
    rcpt_to: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]

    def summary(self) -> dict[str, Any]:
        msg = self.message
        return {
            "number": self.number,
            "received_at": self.received_at.isoformat(),
            "from": str(msg.get("From", "")),
            "to": self.rcpt_to,
            "subject": str(msg.get("Subject", "")),
            "message_id": str(msg.get("Message-ID", "")),
        }

    def detail(self) -> dict[str, Any]:
        msg = self.message
        text = msg.get_body(("plain",))
        body_html = msg.get_body(("html",))
        return self.summary() | {
            "headers": [[k, str(v)] for k, v in msg.items()],
            "text": text.get_content() if text is not None else None,  # type: ignore[attr-defined]
            "html": body_html.get_content() if body_html is not None else None,  # type: ignore[attr-defined]
            "size": len(self.raw),
        }


class MailCatcher:
    """The aiosmtpd handler: accepts everything, keeps it."""

    def __init__(self, folder: Path | None = None, keep: int = 5000) -> None:
        self.folder = folder
        self.mails: deque[CaughtMail] = deque(maxlen=keep)
        self.count = 0
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        raw = envelope.original_content or b""
        mail = CaughtMail(
            number=self.count,
            received_at=datetime.now(UTC),
            mail_from=str(envelope.mail_from),
            rcpt_to=[str(r) for r in envelope.rcpt_tos],
            raw=raw,
        )
        self.mails.append(mail)
        if self.folder is not None:
            stamp = mail.received_at.strftime("%Y%m%dT%H%M%S")
            await asyncio.to_thread((self.folder / f"{stamp}-{mail.number:06d}.eml").write_bytes, raw)
        return f"250 2.0.0 Ok: caught as {mail.number}"

    def find(self, number: int) -> CaughtMail:
        for mail in self.mails:
            if mail.number == number:
                return mail
        raise HTTPException(status_code=404, detail=f"no mail number {number}")


def http_app(catcher: MailCatcher) -> FastAPI:
    """The catcher's pages and JSON API."""
    app = FastAPI(title="Distretto mail catcher")

    def newest(limit: int, offset: int) -> list[CaughtMail]:
        mails = list(reversed(catcher.mails))
        return mails[offset : offset + limit]

    @app.get("/api/messages")
    async def list_messages(
        limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0), to: str | None = None
    ) -> dict[str, Any]:
        mails = [m for m in reversed(catcher.mails) if to is None or to.lower() in (r.lower() for r in m.rcpt_to)]
        return {
            "items": [m.summary() for m in mails[offset : offset + limit]],
            "total": len(mails),
            "limit": limit,
            "offset": offset,
        }

    @app.get("/api/messages/{number}")
    async def get_message(number: int) -> dict[str, Any]:
        return catcher.find(number).detail()

    @app.get("/messages/{number}.eml")
    async def raw_message(number: int) -> Response:
        return Response(catcher.find(number).raw, media_type="message/rfc822")

    @app.get("/messages/{number}", response_class=HTMLResponse)
    async def show_message(number: int) -> HTMLResponse:
        d = catcher.find(number).detail()
        headers = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in d["headers"])
        body = (
            f"<p><a href='/'>← all mails</a> · <a href='/messages/{number}.eml'>raw</a></p>"
            f"<h1>{html.escape(d['subject'])}</h1><table>{headers}</table>"
            f"<h2>Text</h2><pre>{html.escape(d['text'] or '')}</pre>"
            # The HTML part is shown sandboxed: no scripts, no navigation of this page.
            f"<h2>HTML</h2><iframe sandbox style='width:100%;height:30em' srcdoc=\"{html.escape(d['html'] or '')}\">"
            "</iframe>"
        )
        return HTMLResponse(_doc(d["subject"], body))

    @app.get("/", response_class=HTMLResponse)
    async def index(limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0)) -> HTMLResponse:
        rows = "".join(
            f"<tr><td>{s['number']}</td><td>{html.escape(s['received_at'][:19])}</td>"
            f"<td>{html.escape(', '.join(s['to']))}</td>"
            f"<td><a href='/messages/{s['number']}'>{html.escape(s['subject'] or '(no subject)')}</a></td></tr>"
            for s in (m.summary() for m in newest(limit, offset))
        )
        body = (
            f"<p>{catcher.count} mails caught (newest first).</p>"
            f"<table><tr><th>#</th><th>received</th><th>to</th><th>subject</th></tr>{rows}</table>"
        )
        return HTMLResponse(_doc("Mail catcher", body))

    return app


def _doc(title: str, body: str) -> str:
    return (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left;vertical-align:top}"
        "</style>" + body
    )


async def serve(host: str, smtp_port: int, http_port: int, folder: Path | None, keep: int) -> None:
    """Run the SMTP server and the HTTP page until cancelled."""
    import uvicorn

    catcher = MailCatcher(folder, keep)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(catcher, hostname="catcher.distretto", decode_data=False, data_size_limit=50 * 1024 * 1024),
        host,
        smtp_port,
    )
    config = uvicorn.Config(
        http_app(catcher), host=host, port=http_port, log_level="warning", access_log=False, log_config=None
    )
    get_logger(__name__).info("mail catcher listening", smtp=f"{host}:{smtp_port}", http=f"{host}:{http_port}")
    try:
        await uvicorn.Server(config).serve()
    finally:
        smtp.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="distretto_dev.catcher", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument("--folder", default=str(Path("var") / "mail"), help="where .eml files go ('' = none)")
    parser.add_argument("--keep", type=int, default=5000, help="mails kept in memory")
    args = parser.parse_args()
    configure_logging("catcher")
    folder = Path(args.folder) if args.folder else None  # Path("") would be "." (the working directory)
    asyncio.run(serve(args.host, args.smtp_port, args.http_port, folder, args.keep))


if __name__ == "__main__":
    main()
