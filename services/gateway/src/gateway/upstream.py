"""A small HTTP/1.1 client for the proxy's hot path: an asyncio ``Protocol`` and httptools' response parser.

Why not httpx here: one ``httpx.AsyncClient`` request costs about 1.2 ms of CPU on the
target machine, twenty times a raw asyncio exchange; the gateway's throughput goal
cannot be met with it. httpx stays where it is not hot (OpenAPI aggregation, health).

What it does, and no more:

* one :class:`Pool` per upstream: at most ``max_connections`` open, at most ``max_idle``
  kept alive between requests (most recently used first, dropped after ``keepalive_expiry``
  seconds or as soon as the service closes them), callers beyond the limit wait up to
  ``pool_timeout``;
* one request at a time per connection (no pipelining); a connection is reused only when
  its response was read to the end, the service did not say ``Connection: close`` and
  nothing went wrong;
* request bodies streamed with ``Content-Length`` or chunked; response bodies streamed
  as they arrive, framed by ``Content-Length``, chunked encoding, or the end of the
  connection; the reading side is paused when the caller does not keep up;
* time-outs: connect, pool wait, write (the service not taking the body) and read (no
  byte of the answer for that long), each raising its own :class:`UpstreamError`.

Why one file over 500 lines: :class:`Connection` (the protocol and the parser's callbacks, two
thirds of it), :class:`Pool` and :class:`Upstream` are one small client whose parts share each
connection's private state (reusable or not, idle since, paused reading) on the hot path; split, that
state would become an interface between modules for no reader's gain. The errors are its vocabulary.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

READ_HIGH_WATER = 256 * 1024
"""Buffered response bytes beyond which reading from the service pauses until the caller takes them."""


class UpstreamError(Exception):
    """A request to a service failed; ``kind`` is the metric label."""

    kind = "broken"


class ConnectRefused(UpstreamError):
    """The service could not be reached (refused, unreachable, unknown host)."""

    kind = "refused"


class ConnectTimeout(UpstreamError):
    """The service did not accept a connection within the connect time-out."""

    kind = "timeout"


class PoolTimeout(UpstreamError):
    """Every connection to the service stayed busy for the whole pool time-out."""

    kind = "timeout"


class WriteTimeout(UpstreamError):
    """The service did not take the request body within the write time-out."""

    kind = "timeout"


class ReadTimeout(UpstreamError):
    """No byte of the answer arrived within the read time-out."""

    kind = "timeout"


class UpstreamClosed(UpstreamError):
    """The connection was closed or reset, or the answer was not valid HTTP."""

    kind = "broken"


class ClientGone(Exception):
    """The caller disconnected while its body was being forwarded."""


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class Connection(asyncio.Protocol):
    """One keep-alive connection to a service, carrying one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._slot_released = True
        """Counted against the pool's limit only once handed out (see :meth:`Pool.acquire`)."""
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._in_flight = False
        self._reset(False)

    def _reset(self, head_only: bool) -> None:
        self._parser: Any = None
        self._head_only = head_only
        self.exc: UpstreamError | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.got_data = False
        self._framed = False
        self._interim = False
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._read_paused = False

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self._in_flight or self.complete:
            # bytes nobody asked for: the connection can no longer be trusted
            self.exc = UpstreamClosed("the service sent data outside of an answer")
            self._abort()
            return
        self.got_data = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.exc = UpstreamClosed(f"the service's answer is not valid HTTP ({exc})")
            self._abort()
            return
        if self._buffered > READ_HIGH_WATER and not self._read_paused and not self.complete:
            self._read_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._in_flight and not self.complete and self.exc is None:
            if self.head_done and not self._framed:
                # neither Content-Length nor chunked: the answer ends with the connection
                self.complete = True
                self.keep_alive = False
            else:
                detail = f" ({exc})" if exc else ""
                self.exc = UpstreamClosed(f"the service closed the connection{detail}")
        self._wake()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)
        self.pool.forget(self)
        self._release_slot()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:  # a second answer in the same read: never trust this connection again
            self.keep_alive = False
            self.exc = UpstreamClosed("the service sent data outside of an answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if len(name) in (14, 17):
            lowered = name.lower()
            if lowered == b"content-length" or lowered == b"transfer-encoding":
                self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue and friends: the real answer follows
            self.headers = []
            self._framed = False
            return
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        self.head_done = True
        if self._head_only:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True

    # --- helpers
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float) -> None:
        fut = self.loop.create_future()
        self._waiter = fut
        handle = self.loop.call_later(timeout, _expire, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._waiter = None

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _release_slot(self) -> None:
        if not self._slot_released:
            self._slot_released = True
            self.pool.slot_freed()

    def close(self) -> None:
        """Close the connection (its pool slot is free at once)."""
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self._release_slot()

    @property
    def reusable(self) -> bool:
        """True when the last answer was read to its end and the connection may carry another request."""
        return self.complete and self.keep_alive and not self.closed and self.exc is None and not self._body

    # --- one exchange
    async def send_request(
        self, head: bytes, receive: Receive | None, chunked: bool, head_only: bool, write_timeout: float
    ) -> None:
        """Write the request head and, when ``receive`` is given, stream the caller's body."""
        self._reset(head_only)
        self._parser = httptools.HttpResponseParser(self)
        self._in_flight = True
        transport = self.transport
        assert transport is not None
        if self.closed:
            raise UpstreamClosed("the service closed the connection")
        transport.write(head)
        if receive is None:
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if self.closed or self.exc is not None:
                if self.head_done:  # answered (and closed) early, before taking the whole body
                    self.keep_alive = False
                    return
                raise self.exc or UpstreamClosed("the service closed the connection")
            if self.head_done:
                # the service answered before taking the whole body (e.g. 413): stop sending, never reuse
                self.keep_alive = False
                return
            if chunk:
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
            if not more:
                if chunked:
                    transport.write(b"0\r\n\r\n")
                return
            if self._write_paused:
                await self._drain(write_timeout)

    async def _drain(self, timeout: float) -> None:
        while self._write_paused and not self.closed:
            fut = self.loop.create_future()
            self._drain_waiter = fut
            handle = self.loop.call_later(timeout, _expire, fut)
            try:
                await fut
            except TimeoutError:
                raise WriteTimeout("the service did not take the request body in time") from None
            finally:
                handle.cancel()
                self._drain_waiter = None

    async def read_head(self, timeout: float) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Status and raw headers of the answer."""
        while not self.head_done:
            if self.exc is not None:
                raise self.exc
            if self.closed:
                raise UpstreamClosed("the service closed the connection")
            try:
                await self._wait(timeout)
            except TimeoutError:
                raise ReadTimeout("no answer in time") from None
        return self.status, self.headers

    async def read_chunk(self, timeout: float) -> tuple[bytes, bool]:
        """The body bytes that arrived so far (waiting for some when none) and whether more follow."""
        while True:
            body = self._body
            if body:
                data = body.popleft() if len(body) == 1 else b"".join(body)
                body.clear()
                self._buffered = 0
                if self._read_paused and not self.closed:
                    self._read_paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                return data, not (self.complete and not self._body)
            if self.complete:
                return b"", False
            if self.exc is not None:
                raise self.exc
            if self.closed:
                raise UpstreamClosed("the service closed the connection")
            try:
                await self._wait(timeout)
            except TimeoutError:
                raise ReadTimeout("the answer stalled") from None

    def finished(self) -> None:
        """The exchange is over: back to the pool when reusable, else closed."""
        self._in_flight = False
        self.pool.release(self)


class Pool:
    """Keep-alive connections to one service (host, port, scheme)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        max_connections: int = 200,
        max_idle: int = 100,
        connect_timeout: float = 2.0,
        pool_timeout: float = 5.0,
        keepalive_expiry: float = 4.0,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if tls else None
        self.max_connections = max(1, max_connections)
        self.max_idle = max(0, max_idle)
        self.connect_timeout = connect_timeout
        self.pool_timeout = pool_timeout
        self.keepalive_expiry = keepalive_expiry
        self.loop = asyncio.get_running_loop()
        self.idle: list[Connection] = []
        self.open = 0
        """Connections counted against ``max_connections`` (connecting, busy or idle)."""
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def acquire(self) -> tuple[Connection, bool]:
        """A connection and whether it was reused (``False``: freshly opened)."""
        deadline: float | None = None
        while True:
            idle = self.idle
            if idle:
                now = time.monotonic()
                while idle:
                    conn = idle.pop()
                    if conn.closed or now - conn.idle_since > self.keepalive_expiry:
                        conn.close()
                        continue
                    return conn, True
            if self.open < self.max_connections:
                self.open += 1
                try:
                    conn = await self._connect()
                except BaseException:
                    self.open -= 1
                    self._wake_one()
                    raise
                conn._slot_released = False
                if conn.closed:  # lost between connecting and now
                    conn.close()
                    raise UpstreamClosed("the service closed the connection")
                return conn, False
            if deadline is None:
                deadline = self.loop.time() + self.pool_timeout
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise PoolTimeout("no free connection in time")
            fut = self.loop.create_future()
            self._waiters.append(fut)
            handle = self.loop.call_later(remaining, _expire, fut)
            try:
                await fut
            except TimeoutError:
                raise PoolTimeout("no free connection in time") from None
            finally:
                handle.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)

    async def _connect(self) -> Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError:
            raise ConnectTimeout("no connection in time") from None
        except ConnectionRefusedError:
            raise ConnectRefused("connection refused") from None
        except OSError as exc:
            raise ConnectRefused(exc.strerror or str(exc) or type(exc).__name__) from None
        return conn

    def release(self, conn: Connection) -> None:
        """Keep ``conn`` for the next request when it is reusable, else close it."""
        if conn.reusable and not self._closed and len(self.idle) < self.max_idle:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
            self._wake_one()
        else:
            conn.close()

    def forget(self, conn: Connection) -> None:
        """``conn`` is gone (the service closed it): no longer idle."""
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def slot_freed(self) -> None:
        """A connection closed: its place under ``max_connections`` is free."""
        self.open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def close(self) -> None:
        """Close every idle connection; busy ones close when their exchange ends."""
        self._closed = True
        while self.idle:
            self.idle.pop().close()


class Upstream:
    """A service's base URL split for the client: its pool, ``Host`` header and path prefix."""

    def __init__(self, name: str, base_url: str, pool_options: dict[str, Any], api_prefix: bytes | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"The {name} service URL must be http(s)://host[:port][/prefix], not {base_url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        self.name = name
        self.api_prefix = f"/api/{name}".encode() if api_prefix is None else api_prefix
        """How the gateway's paths for this service begin (stripped before forwarding)."""
        self.host_header = parts.netloc.rpartition("@")[2].encode("idna")
        self.prefix = parts.path.rstrip("/").encode()
        self._host = parts.hostname
        self._port = port
        self._tls = tls
        self._options = pool_options
        self._pool: Pool | None = None

    @property
    def pool(self) -> Pool:
        """The pool, created on first use (it belongs to the running event loop)."""
        pool = self._pool
        if pool is None:
            pool = self._pool = Pool(self._host, self._port, tls=self._tls, **self._options)
        return pool

    def close(self) -> None:
        """Close the idle connections."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
