"""The mail catcher used by `make up`: receives over SMTP, shows over HTTP, keeps .eml files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiosmtplib
import httpx

from distretto_dev.testing import free_port
from newsletter.delivery import mime

from .conftest import wait_until


async def test_catcher_keeps_mails_and_shows_them(tmp_path: Path) -> None:
    smtp_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distretto_dev.catcher",
            "--smtp-port",
            str(smtp_port),
            "--http-port",
            str(http_port),
            "--folder",
            str(tmp_path / "mail"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(base + "/api/messages")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(up, timeout=60, what="catcher up")
        raw = mime.build_message(
            from_header="News <news@d.example>",
            to_name="Anna",
            to_addr="anna@example.org",
            subject="Caught <b>",
            text="hello",
            html="<p>hello</p>",
            message_id="<m1@d.example>",
        )
        await aiosmtplib.send(
            raw, sender="news@d.example", recipients=["anna@example.org"], hostname="127.0.0.1", port=smtp_port
        )
        async with httpx.AsyncClient(base_url=base) as c:
            listing = (await c.get("/api/messages")).json()
            assert listing["total"] == 1 and listing["items"][0]["subject"] == "Caught <b>"
            assert listing["items"][0]["to"] == ["anna@example.org"]
            one = (await c.get("/api/messages/1")).json()
            assert one["text"].strip() == "hello" and one["message_id"] == "<m1@d.example>"
            page = (await c.get("/")).text
            assert "Caught &lt;b&gt;" in page
            assert (await c.get("/messages/1")).status_code == 200
            assert (await c.get("/messages/1.eml")).content == raw
            assert (await c.get("/api/messages/99")).status_code == 404
        files = list((tmp_path / "mail").glob("*.eml"))
        assert len(files) == 1 and files[0].read_bytes() == raw
    finally:
        proc.terminate()
        proc.wait(10)
