"""An httpx transport for the proxy's upstream calls: HTTP/1.1 keep-alive connections on
asyncio streams, responses parsed by httptools (uvicorn's parser, in C).

The proxy keeps httpx's client API (requests, responses, timeouts and exceptions are
httpx's) and swaps only the layer below it. httpx's default transport, httpcore on
anyio with h11, costs about 0.8 ms of CPU per proxied call on the 2-core reference
machine, and its pool scans every connection it holds (quadratically, in part) whenever
a request starts or a response ends; this one costs a fraction and takes an idle
connection in constant time. What it leaves out, the proxy does not need: HTTP/2,
proxies from the environment (TOKI_PROXY_TRANSPORT=httpx restores httpx's own), and
request bodies that are not already in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

READ_SIZE = 65536
DEFAULT_PORTS = {b"http": 80, b"https": 443}
Origin = tuple[bytes, str, int]


class _Connection:
    __slots__ = ("idle_since", "origin", "reader", "writer")

    def __init__(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.origin, self.reader, self.writer = origin, reader, writer
        self.idle_since = 0.0

    def usable(self, now: float, expiry: float) -> bool:
        return (
            now - self.idle_since < expiry
            and not self.reader.at_eof()
            and not self.writer.is_closing()
            and not self.reader._buffer  # type: ignore[attr-defined]  # bytes nobody asked for: not reusable
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Response:
    """httptools callbacks for one response: status, headers, body chunks as they come."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.messages = 0
        self.chunks: list[bytes] = []
        self._name = b""

    def on_message_begin(self) -> None:
        self.messages += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


def _timeout(request: httpx.Request, kind: str) -> float | None:
    timeout: float | None = request.extensions.get("timeout", {}).get(kind)
    return timeout


class LeanTransport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 connections, at most `max_connections` open at a time."""

    def __init__(self, *, max_connections: int, keepalive_expiry: float = 30.0) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots: asyncio.Semaphore | None = None  # made in the loop that uses it
        self._ssl: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    async def _connect(self, origin: Origin, request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        tls = self._ssl_context() if scheme == b"https" else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None, limit=READ_SIZE),
                _timeout(request, "connect"),
            )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return _Connection(origin, reader, writer)

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to have been closed
            if connection.usable(now, self._expiry):
                return connection
            connection.close()
        return None

    def _give_back(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.origin, []).append(connection)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
        url = request.url
        origin = (url.raw_scheme, url.host, url.port or DEFAULT_PORTS.get(url.raw_scheme, 80))
        try:
            async with asyncio.timeout(_timeout(request, "pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no connection became free in time", request=request) from exc
        try:
            return await self._exchange(request, origin)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(self, request: httpx.Request, origin: Origin) -> httpx.Response:
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
        head += [b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw]
        message = b"".join(head) + b"\r\n" + body
        while True:
            connection = self._take_idle(origin)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(origin, request)
            try:
                return await self._send(connection, request, message)
            except _ClosedBeforeAnswer:
                connection.close()
                if not reused:
                    raise httpx.RemoteProtocolError(
                        "the server closed the connection without answering", request=request
                    ) from None
                # A kept-alive connection the server had closed meanwhile: nothing was
                # processed, so the request goes again on a new connection.
            except BaseException:
                connection.close()
                raise

    async def _send(self, connection: _Connection, request: httpx.Request, message: bytes) -> httpx.Response:
        try:
            connection.writer.write(message)
            async with asyncio.timeout(_timeout(request, "write")):
                await connection.writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("writing the request timed out", request=request) from exc
        except (ConnectionError, OSError) as exc:
            raise _ClosedBeforeAnswer from exc
        state = _Response()
        parser = httptools.HttpResponseParser(state)
        received = False
        while not state.headers_done:
            data = await self._read(connection, request)
            if not data:
                if received:
                    raise httpx.RemoteProtocolError("the server closed the connection mid-response", request=request)
                raise _ClosedBeforeAnswer
            received = True
            self._feed(parser, data, request)
        status = parser.get_status_code()
        # No body for these, whatever the headers say; the parser would wait for one.
        bodiless = request.method == "HEAD" or status in (204, 304) or status < 200
        stream = _Body(self, connection, request, parser, state, bodiless)
        return httpx.Response(status, headers=state.headers, stream=stream, extensions={"http_version": b"HTTP/1.1"})

    @staticmethod
    async def _read(connection: _Connection, request: httpx.Request) -> bytes:
        try:
            async with asyncio.timeout(_timeout(request, "read")):  # cheaper than wait_for: no task
                return await connection.reader.read(READ_SIZE)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("the server did not answer in time", request=request) from exc
        except (ConnectionError, OSError) as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc

    @staticmethod
    def _feed(parser: httptools.HttpResponseParser, data: bytes, request: httpx.Request) -> None:
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise httpx.RemoteProtocolError(f"malformed response: {exc}", request=request) from exc

    def _finish(self, connection: _Connection, *, reusable: bool) -> None:
        assert self._slots is not None
        self._slots.release()
        if reusable:
            self._give_back(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _ClosedBeforeAnswer(Exception):
    pass


class _Body(httpx.AsyncByteStream):
    """A response body as it arrives; the connection goes back to the pool once it has
    been read to the end, and is closed if the reader stops early."""

    def __init__(
        self,
        transport: LeanTransport,
        connection: _Connection,
        request: httpx.Request,
        parser: httptools.HttpResponseParser,
        state: _Response,
        bodiless: bool,
    ) -> None:
        self._transport, self._connection, self._request = transport, connection, request
        self._parser, self._state = parser, state
        self._done = bodiless or state.complete
        self._reusable = not bodiless  # a bodiless response leaves the parser expecting more
        self._released = False
        self._headers = dict(state.headers)
        # From the headers: the parser forgets keep-alive once the message is complete.
        connection_header = self._headers.get(b"connection", b"").lower()
        version = parser.get_http_version()
        self._keep_alive = b"close" not in connection_header if version == "1.1" else b"keep-alive" in connection_header

    async def __aiter__(self) -> AsyncIterator[bytes]:
        state = self._state
        if state.chunks:
            chunks, state.chunks = state.chunks, []
            for chunk in chunks:
                yield chunk
        while not self._done:
            data = await self._transport._read(self._connection, self._request)
            if not data:
                if self._until_close():
                    self._reusable = False
                    break
                raise httpx.RemoteProtocolError("the server closed the connection mid-body", request=self._request)
            self._transport._feed(self._parser, data, self._request)
            if state.chunks:
                chunks, state.chunks = state.chunks, []
                for chunk in chunks:
                    yield chunk
            self._done = state.complete
        self._release(reusable=self._reusable and self._keep_alive and state.messages == 1)

    def _until_close(self) -> bool:
        """A body without length or chunking ends when the server closes the connection."""
        return b"content-length" not in self._headers and b"chunked" not in self._headers.get(b"transfer-encoding", b"")

    def _release(self, *, reusable: bool) -> None:
        if not self._released:
            self._released = True
            self._transport._finish(self._connection, reusable=reusable)

    async def aclose(self) -> None:
        # Closed before the end (a caller that left, an error): the rest of the body would
        # still be on the wire, so the connection cannot serve another request.
        self._release(reusable=self._done and self._reusable and self._keep_alive and self._state.messages == 1)

    def __del__(self) -> Any:
        if not self._released:  # never closed: give the slot back, drop the connection
            self._release(reusable=False)
