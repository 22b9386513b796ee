"""Forwarding one call upstream and its answer back, chunk by chunk.

`Forwarder.forward` sends the caller's request to the account's base URL through the
shared `httpx.AsyncClient` and relays the response as ASGI messages the moment each
chunk arrives. For recorded calls it fills a `Call` on the way: status, SSE events or
body, time to first token, latency. Failures before the first byte answer the caller
with an OpenAI-style error (504 timeout, 502 unreachable); a stream that breaks later
is cut off, as the upstream cut it.

When the caller streams chat or text completions without asking for usage, the proxy
may ask upstream for it (`stream_options.include_usage`, setting
TOKI_PROXY_FORCE_STREAM_USAGE) and takes out what that adds before the caller sees it:
`"usage": null` in each chunk and the final usage-only chunk. A model that rejects the
option gets the original request again, and is not asked again by this process.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx
from django.conf import settings

from usage.proxy import sse
from usage.proxy.hygiene import relayed_headers
from usage.proxy.recorder import Call
from usage.proxy.transport import LeanTransport

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# Response headers carrying the provider's own id of a call, most specific first: a New API
# console (as TOKI's is) logs a request under its X-Oneapi-Request-Id; OpenAI-style APIs
# send x-request-id. Kept on the record, it recognises the call when the sync brings it too.
REQUEST_ID_HEADERS = ("x-oneapi-request-id", "x-request-id")
SMALL_BODY = 1024 * 1024  # non-streamed bodies up to this size are relayed in one message
USAGE_OPTION = b'"stream_options":{"include_usage":true}'


POOL_SHARDS = 16


class ShardedTransport(httpx.AsyncBaseTransport):
    """httpx's connection pool, split in several smaller ones taken in turn.

    httpcore's pool looks at every connection it holds (a readability check each, and a
    quadratic count of idle ones) whenever a request starts or a response closes: about
    a millisecond per request at 50 open connections, the proxy's whole budget. Small
    pools keep those scans short; each still reuses its keep-alive connections.
    """

    def __init__(self, *, max_connections: int, shards: int = POOL_SHARDS) -> None:
        per_shard = max(1, max_connections // shards)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=30.0)
        self._pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(shards)]
        self._turn = itertools.cycle(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await next(self._turn).handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class ProxyClient(httpx.AsyncClient):
    """An AsyncClient without a cookie jar: the proxy relays Set-Cookie to its caller, and a
    jar shared by every caller would leak one caller's cookies into the next (and cost time)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, value: Any) -> None:
        pass


def new_client() -> httpx.AsyncClient:
    """The one client a process shares: pooled keep-alive connections to every upstream."""
    transport: httpx.AsyncBaseTransport
    if settings.TOKI_PROXY_TRANSPORT == "httpx":
        # httpx's own (httpcore), e.g. to go through HTTP(S)_PROXY from the environment.
        transport = ShardedTransport(max_connections=settings.TOKI_PROXY_MAX_CONNECTIONS)
        return ProxyClient(transport=transport, timeout=timeout(), follow_redirects=False, trust_env=True)
    transport = LeanTransport(max_connections=settings.TOKI_PROXY_MAX_CONNECTIONS)
    return ProxyClient(transport=transport, timeout=timeout(), follow_redirects=False)


def timeout() -> httpx.Timeout:
    # Read per request, so a changed setting applies without a new client.
    return httpx.Timeout(
        connect=settings.TOKI_PROXY_CONNECT_TIMEOUT,
        read=settings.TOKI_PROXY_TIMEOUT,
        write=settings.TOKI_PROXY_TIMEOUT,
        pool=settings.TOKI_PROXY_CONNECT_TIMEOUT,
    )


def upstream_request_id(headers: httpx.Headers) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value: str | None = headers.get(name)
        if value:
            return value
    return None


def error_body(message: str, kind: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


async def send_error(send: Send, status: int, message: str, kind: str, code: str) -> None:
    body = error_body(message, kind, code)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def with_usage_option(body: bytes, parsed: dict[str, Any]) -> bytes:
    """The request body with `stream_options.include_usage` set, changing nothing else
    where possible (the option is added before the closing brace)."""
    if "stream_options" not in parsed:
        trimmed = body.rstrip()
        if trimmed.endswith(b"}") and parsed:
            return trimmed[:-1] + b"," + USAGE_OPTION + b"}"
    options = parsed.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    return json.dumps(parsed | {"stream_options": options | {"include_usage": True}}, ensure_ascii=False).encode()


def rejects_usage_option(status: int, body: bytes) -> bool:
    return status in (400, 422) and (b"stream_options" in body or b"include_usage" in body)


class Forwarder:
    """One forwarded exchange. `call` is None for paths that are forwarded but not recorded."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        method: str,
        url: str,
        headers: Headers,
        body: bytes,
        call: Call | None,
        started: float,
        inject_usage: bool,
    ) -> None:
        self.client, self.method, self.url, self.headers, self.body = client, method, url, headers, body
        self.call, self.started, self.inject_usage = call, started, inject_usage
        self.finished = False  # set just before the last message, so a disconnect after it is not a cancel
        self.usage_option_rejected = False

    def _ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def _fail(self, status: int, kind: str, code: str, message: str) -> None:
        if self.call is not None:
            self.call.failure = (status, kind, code, message)

    async def _open(self, body: bytes) -> httpx.Response:
        request = httpx.Request(
            self.method, self.url, headers=self.headers, content=body, extensions={"timeout": timeout().as_dict()}
        )
        return await self.client.send(request, stream=True)

    async def forward(self, send: Send) -> None:
        body = with_usage_option(self.body, self.call.request_json) if self.inject_usage and self.call else self.body
        try:
            response = await self._open(body)
            if self.inject_usage and response.status_code in (400, 422):
                try:
                    first = await response.aread()
                except BaseException:
                    await response.aclose()
                    raise
                if rejects_usage_option(response.status_code, first):
                    # The model refuses the option: the caller's own request, as sent.
                    await response.aclose()
                    self.usage_option_rejected, self.inject_usage = True, False
                    response = await self._open(self.body)
        except httpx.TimeoutException as exc:
            seconds = (
                settings.TOKI_PROXY_TIMEOUT
                if isinstance(exc, httpx.ReadTimeout)
                else settings.TOKI_PROXY_CONNECT_TIMEOUT
            )
            message = f"The upstream API did not answer within {seconds:g} s ({type(exc).__name__})."
            await self._answer_failure(send, 504, "timeout", "upstream_timeout", message)
            return
        except httpx.TransportError as exc:
            message = f"Could not reach the upstream API: {type(exc).__name__}: {exc}"
            await self._answer_failure(send, 502, "upstream_error", "upstream_unreachable", message)
            return
        try:
            await self._relay(response, send)
        finally:
            await response.aclose()  # on a cancel too: closes the upstream connection mid-stream

    async def _answer_failure(self, send: Send, status: int, kind: str, code: str, message: str) -> None:
        self._fail(status, kind, code, message)
        self.finished = True
        await send_error(send, status, message, kind, code)
        if self.call is not None:
            self.call.latency_ms = self._ms()

    async def _relay(self, response: httpx.Response, send: Send) -> None:
        call = self.call
        if call is not None:
            call.status = response.status_code
            call.upstream_request_id = upstream_request_id(response.headers)
        content_type = response.headers.get("content-type", "")
        streaming = content_type.startswith("text/event-stream")
        strip = self.inject_usage and streaming and response.status_code < 300
        headers = relayed_headers(response.headers.raw, drop_length=strip)
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        try:
            if streaming:
                await self._relay_events(response, send, strip)
            else:
                await self._relay_body(response, send)
        except httpx.TimeoutException:
            self._fail(504, "timeout", "upstream_timeout", "The upstream stream stalled past the read timeout.")
            self._cut_off()
        except httpx.TransportError as exc:
            message = f"The upstream stream broke off: {type(exc).__name__}"
            self._fail(502, "upstream_error", "stream_interrupted", message)
            self._cut_off()
        else:
            if call is not None:
                call.latency_ms = self._ms()

    def _cut_off(self) -> None:
        """The response stays unfinished: the ASGI server then drops the caller's connection,
        as the upstream dropped the proxy's."""
        if self.call is not None:
            self.call.latency_ms = self._ms()
        # The URL without its query string, which may carry a key.
        logger.warning("proxy: upstream broke off %s %s", self.method, self.url.partition("?")[0])

    async def _relay_body(self, response: httpx.Response, send: Send) -> None:
        call = self.call
        length = response.headers.get("content-length")
        small = length is not None and length.isdigit() and int(length) <= SMALL_BODY
        if small or response.is_stream_consumed:  # consumed: read already, to look for a rejected option
            data = await response.aread()
            if call is not None:
                call.keep_body(data)
            self.finished = True
            await send({"type": "http.response.body", "body": data})
            return
        async for chunk in response.aiter_raw():
            if call is not None:
                call.keep_body(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        self.finished = True
        await send({"type": "http.response.body", "body": b""})

    async def _relay_events(self, response: httpx.Response, send: Send, strip: bool) -> None:
        call = self.call
        splitter = sse.EventSplitter() if call is not None or strip else None
        waiting_for_output = call is not None
        # The raw stream, not aiter_raw(): the proxy sets no encoding to decode, and every
        # layer costs time on each of a stream's many small chunks.
        async for chunk in cast(httpx.AsyncByteStream, response.stream):
            events = splitter.feed(chunk) if splitter is not None else []
            if waiting_for_output and any(sse.carries_output(event) for event in events):
                call.ttft_ms = self._ms()  # type: ignore[union-attr]  # waiting_for_output implies a call
                waiting_for_output = False
            if strip:
                if len(events) == 1:  # the usual case: one event per chunk
                    chunk = sse.without_requested_usage(events[0]) or b""
                else:
                    kept = (sse.without_requested_usage(event) for event in events)
                    chunk = b"".join(event for event in kept if event is not None)
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if call is not None:
                call.events.extend(events)
        rest = splitter.rest() if splitter is not None else b""
        self.finished = True
        await send({"type": "http.response.body", "body": rest if strip else b""})
        if call is not None and rest:
            call.events.append(rest)
