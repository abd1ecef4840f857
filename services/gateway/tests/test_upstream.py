"""The proxy's own HTTP/1.1 client against a scripted raw-socket service: keep-alive, framing, failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from distretto_dev.testing import DatabaseTarget
from gateway.upstream import Pool, PoolTimeout, UpstreamError

from .conftest import Upstreams, admin_headers, gateway_settings, running_gateway


class RawService:
    """A service written straight on sockets, so each test can make it misbehave exactly."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.drop_next_on: set[int] = set()
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> RawService:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = b""
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += data[:-2]
        return method, target, headers, body

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        served = 0
        try:
            while True:
                try:
                    request = await self._read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if served and number in self.drop_next_on:
                    return  # the service closes a kept-alive connection just as a request arrives
                served += 1
                self.requests.append(request)
                if not await self._answer(request[1], request[3], writer):
                    return
        finally:
            writer.close()

    async def _answer(self, path: str, body: bytes, w: asyncio.StreamWriter) -> bool:
        """Write the answer for ``path``; False when the connection is to be closed afterwards."""
        if path == "/keep":
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\nkept")
        elif path == "/drop-next":
            self.drop_next_on.add(self.connections)
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        elif path == "/close":
            w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 6\r\n\r\nclosed")
            await w.drain()
            return False
        elif path == "/until-close":
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
            for i in range(5):
                w.write(f"part {i};".encode())
                await w.drain()
                await asyncio.sleep(0.01)
            return False
        elif path == "/chunked":
            w.write(b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nx-answer: chunked\r\n\r\n")
            for i in range(5):
                part = f"chunk {i};".encode()
                w.write(b"%x\r\n%s\r\n" % (len(part), part))
                await w.drain()
                await asyncio.sleep(0.01)
            w.write(b"0\r\n\r\n")
        elif path == "/cut":
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly ten b")
            await w.drain()
            return False
        elif path == "/garbage":
            w.write(b"SMTP READY\r\n\r\n")
            await w.drain()
            return False
        elif path == "/head":
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
        elif path == "/echo":
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        else:
            w.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        await w.drain()
        return True


@pytest.fixture
async def raw_service() -> AsyncIterator[RawService]:
    async with RawService() as service:
        yield service


async def test_connections_are_kept_alive_and_reused(
    sqlite_database: DatabaseTarget, upstreams: Upstreams, raw_service: RawService
) -> None:
    async with running_gateway(gateway_settings(sqlite_database, upstreams, projects_url=raw_service.url)) as client:
        admin = await admin_headers(client)
        for _ in range(5):
            response = await client.get("/api/projects/keep", headers=admin)
            assert response.status_code == 200 and response.text == "kept"
        assert raw_service.connections == 1
        # HEAD: the answer has a Content-Length but no body, and the connection stays usable
        head = await client.head("/api/projects/head", headers=admin)
        assert head.status_code == 200 and head.headers["content-length"] == "1234"
        assert (await client.get("/api/projects/keep", headers=admin)).text == "kept"
        assert raw_service.connections == 1
        # a service saying Connection: close is not reused, and nothing of it reaches the caller
        closed = await client.get("/api/projects/close", headers=admin)
        assert closed.status_code == 200 and closed.text == "closed"
        assert closed.headers.get("connection") != "close"
        assert (await client.get("/api/projects/keep", headers=admin)).text == "kept"
        assert raw_service.connections == 2


async def test_body_framings_are_read_to_the_end(
    sqlite_database: DatabaseTarget, upstreams: Upstreams, raw_service: RawService
) -> None:
    async with running_gateway(gateway_settings(sqlite_database, upstreams, projects_url=raw_service.url)) as client:
        admin = await admin_headers(client)
        chunked = await client.get("/api/projects/chunked", headers=admin)
        assert chunked.status_code == 201 and chunked.headers["x-answer"] == "chunked"
        assert chunked.text == "".join(f"chunk {i};" for i in range(5))
        until_close = await client.get("/api/projects/until-close", headers=admin)
        assert until_close.status_code == 200
        assert until_close.text == "".join(f"part {i};" for i in range(5))
        # a Content-Length body and a chunked one both arrive whole
        payload = bytes(range(256)) * 1000
        echoed = await client.post("/api/projects/echo", content=payload, headers=admin)
        assert echoed.content == payload
        assert raw_service.requests[-1][2]["content-length"] == str(len(payload))

        async def parts() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield payload

        echoed = await client.post("/api/projects/echo", content=parts(), headers=admin)
        assert echoed.content == payload * 4
        seen = raw_service.requests[-1][2]
        assert seen["transfer-encoding"] == "chunked" and "content-length" not in seen


async def test_a_connection_closed_by_the_service_is_retried_only_without_a_body(
    sqlite_database: DatabaseTarget, upstreams: Upstreams, raw_service: RawService
) -> None:
    async with running_gateway(gateway_settings(sqlite_database, upstreams, projects_url=raw_service.url)) as client:
        admin = await admin_headers(client)
        assert (await client.get("/api/projects/drop-next", headers=admin)).status_code == 200
        # the service drops the kept-alive connection when the next request arrives: a GET is sent again
        retried = await client.get("/api/projects/keep", headers=admin)
        assert retried.status_code == 200 and retried.text == "kept"
        assert raw_service.connections == 2
        assert (await client.get("/api/projects/drop-next", headers=admin)).status_code == 200
        # a request whose body went out is never sent twice: the caller gets a 502
        post = await client.post("/api/projects/echo", content=b"pay once", headers=admin)
        assert post.status_code == 502
        assert post.json()["error"] == "upstream_unavailable" and "projects" in post.json()["message"]
        assert [r for r in raw_service.requests if r[3] == b"pay once"] == []


async def test_broken_answers_are_502_or_a_cut_connection(
    sqlite_database: DatabaseTarget, upstreams: Upstreams, raw_service: RawService
) -> None:
    async with running_gateway(gateway_settings(sqlite_database, upstreams, projects_url=raw_service.url)) as client:
        admin = await admin_headers(client)
        garbage = await client.get("/api/projects/garbage", headers=admin)
        assert garbage.status_code == 502
        assert "not valid HTTP" in garbage.json()["message"]
        # The head went out already: the app aborts the answer (uvicorn then cuts the caller's connection,
        # the caller sees a short answer) rather than making up a 502. In process, the abort surfaces as is.
        with pytest.raises(UpstreamError):
            await client.get("/api/projects/cut", headers=admin)
        assert (await client.get("/api/projects/keep", headers=admin)).text == "kept"
        metrics = (await client.get("/metrics", headers=await admin_headers(client))).text
        assert 'distretto_gateway_upstream_errors_total{kind="cut",upstream="projects"}' in metrics
        assert 'distretto_gateway_upstream_errors_total{kind="broken",upstream="projects"}' in metrics


async def test_pool_never_opens_more_than_its_limit(raw_service: RawService) -> None:
    pool = Pool("127.0.0.1", int(raw_service.url.rsplit(":", 1)[1]), max_connections=2, pool_timeout=0.2)
    first, _ = await pool.acquire()
    second, _ = await pool.acquire()
    with pytest.raises(PoolTimeout):
        await pool.acquire()
    # a connection given back (closed here: no exchange happened) frees its place for a waiting caller
    waiting = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.01)
    first.close()
    third, reused = await asyncio.wait_for(waiting, 2)
    assert reused is False and pool.open == 2 and raw_service.connections == 3
    second.close()
    third.close()
    assert pool.open == 0


async def test_the_path_goes_on_as_the_caller_encoded_it(
    sqlite_database: DatabaseTarget, upstreams: Upstreams, raw_service: RawService
) -> None:
    async with running_gateway(gateway_settings(sqlite_database, upstreams, projects_url=raw_service.url)) as client:
        admin = await admin_headers(client)
        await client.get("/api/projects/projects/a%2Fb/x%20y?q=1%262", headers=admin)
        assert raw_service.requests[-1][1] == "/projects/a%2Fb/x%20y?q=1%262"
        # a prefix the caller percent-encoded itself is still stripped
        await client.get("/api/%70rojects/keep", headers=admin)
        assert raw_service.requests[-1][1] == "/keep"
