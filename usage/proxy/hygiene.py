"""What the proxy passes on, and what it refuses before anything is forwarded.

- **Headers** are forwarded and relayed from allow-lists: what an OpenAI-compatible
  client and API send each other. Cookies never cross in either direction (the
  dashboard's `sessionid`/`csrftoken` are not the upstream's business, and an upstream
  `Set-Cookie` must not land on the dashboard's origin), nor do hop-by-hop headers,
  including any the `Connection` header names. TOKI_PROXY_FORWARD_HEADERS adds request
  headers to the list.
- **Paths** are normalised and confined: percent-encoded segments are decoded once,
  dot segments resolved, and each segment encoded again, so the upstream sees exactly
  one reading of the path and nothing above the account's base path
  (`/v1/../../internal` and `/v1/%2e%2e/internal` are refused). A NUL byte is refused.
- **Bodies** are read up to PROXY_MAX_BODY_BYTES and refused beyond, checked against
  Content-Length first and then while the body streams in, so memory stays flat.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

Headers = list[tuple[bytes, bytes]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
NEVER_FORWARDED = HOP_BY_HOP | {b"cookie", b"set-cookie", b"host", b"content-length"}
# What OpenAI-compatible clients send: the official SDKs (their X-Stainless-* telemetry
# included), key headers of the common API styles, and content negotiation.
# Accept-Encoding is left out: the proxy reads responses, so it asks for them uncompressed.
REQUEST_HEADERS = frozenset(
    {
        b"authorization",
        b"api-key",
        b"x-api-key",
        b"content-type",
        b"content-encoding",
        b"accept",
        b"accept-language",
        b"user-agent",
        b"openai-organization",
        b"openai-project",
        b"openai-beta",
        b"idempotency-key",
        b"x-request-id",
    }
)
REQUEST_PREFIXES = (b"x-stainless-",)
# What an OpenAI-compatible API answers with that its clients use: the body's type and
# size, request ids, rate limits and retry advice (the SDKs read x-should-retry and
# retry-after), and what file downloads and caches need.
RESPONSE_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"content-disposition",
        b"cache-control",
        b"etag",
        b"last-modified",
        b"retry-after",
        b"retry-after-ms",
        b"x-should-retry",
        b"x-request-id",
        b"request-id",
    }
)
RESPONSE_PREFIXES = (b"openai-", b"x-ratelimit-")
TAG_HEADERS = {b"x-toki-team": "team", b"x-toki-user": "user", b"x-toki-feature": "feature"}
TOKEN_HEADER = b"x-toki-token"


@cache
def _extra_request_headers(names: tuple[str, ...]) -> frozenset[bytes]:
    return frozenset(name.strip().lower().encode("latin-1") for name in names if name.strip()) - NEVER_FORWARDED


def _connection_named(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Headers the Connection header declares hop-by-hop."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(part.strip().lower() for part in value.split(b","))
    return frozenset(named)


@dataclass(slots=True)
class CallerHeaders:
    """The caller's headers, sorted: what goes upstream, and what is the dashboard's."""

    forward: Headers = field(default_factory=list)
    authorization: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    dashboard_token: str | None = None
    declared_length: int | None = None


def caller_headers(raw: Headers, extra: tuple[str, ...] = ()) -> CallerHeaders:
    """Sort the request's headers (names arrive lower-cased from the ASGI server)."""
    result = CallerHeaders()
    allowed_extra = _extra_request_headers(extra)
    hop = _connection_named(raw)
    for name, value in raw:
        if name in TAG_HEADERS:
            result.tags[TAG_HEADERS[name]] = value.decode("utf-8", "replace")[:100]
        elif name == TOKEN_HEADER:
            result.dashboard_token = value.decode("latin-1").strip()
        elif name == b"content-length":
            result.declared_length = int(value) if value.isdigit() else None
        elif name in NEVER_FORWARDED or name in hop:
            continue
        elif name in REQUEST_HEADERS or name.startswith(REQUEST_PREFIXES) or name in allowed_extra:
            result.forward.append((name, value))
            if name == b"authorization":
                result.authorization = value.decode("latin-1")
    return result


def relayed_headers(raw: Iterable[tuple[bytes, bytes]], *, drop_length: bool = False) -> Headers:
    """The upstream's response headers the caller gets (names lower-cased)."""
    raw = list(raw)
    hop = _connection_named(raw)
    relayed = []
    for name, value in raw:
        name = name.lower()
        if name in hop or (drop_length and name == b"content-length"):
            continue
        if name in RESPONSE_HEADERS or name.startswith(RESPONSE_PREFIXES):
            relayed.append((name, value))
    return relayed


# --- Paths ------------------------------------------------------------------------------------

# pchar of RFC 3986 without "%" (re-encoded) and "/" (the separator, never inside a segment).
SEGMENT_SAFE = "-._~!$&'()*+,;=:@"
_PLAIN_SEGMENTS = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")


class BadPath(ValueError):
    """A path the proxy refuses; the message says why, for the caller."""


@dataclass(frozen=True, slots=True)
class ForwardPath:
    """The normalised path after `/v1`: `raw` to append to the base URL, `text` to read."""

    raw: str
    text: str


def forward_path(raw_path: bytes, prefix_segments: int) -> ForwardPath:
    """The part of `raw_path` after its first `prefix_segments` segments (`/proxy[/slug]/v1`),
    normalised and confined under them; raises BadPath."""
    segments = raw_path.split(b"/")[prefix_segments + 1 :]
    rest = b"/".join(segments)
    if _PLAIN_SEGMENTS.fullmatch(rest) and not rest.startswith(b".") and b"/." not in rest:
        # The usual path (/chat/completions): nothing encoded, no dot segment, nothing to do.
        text = ("/" + rest.decode("ascii")) if segments else ""
        return ForwardPath(text, text)
    kept: list[bytes] = []
    for segment in segments:
        decoded = unquote_to_bytes(segment)
        if b"\x00" in decoded:
            raise BadPath("The path holds a NUL byte (%00).")
        if decoded == b".":
            continue
        if decoded == b"..":
            if not kept:
                raise BadPath("The path climbs above the API's base path (a '..' segment).")
            kept.pop()
            continue
        kept.append(decoded)
    if segments and segments[-1] in (b".", b"..") and kept:
        kept.append(b"")  # "/a/b/.." names the folder "/a/"
    if not segments:
        return ForwardPath("", "")
    raw = "".join("/" + quote_from_bytes(s, safe=SEGMENT_SAFE) for s in kept) or "/"
    text = "".join("/" + s.decode("utf-8", "replace") for s in kept) or "/"
    return ForwardPath(raw, text)


def prefix_matches(raw_path: bytes, expected: list[bytes]) -> bool:
    """Whether the first segments of `raw_path`, decoded, are `expected` (e.g. proxy, slug, v1)."""
    segments = raw_path.split(b"/")[1 : len(expected) + 1]
    return [unquote_to_bytes(s) for s in segments] == expected


# --- Bodies -----------------------------------------------------------------------------------


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when the caller left before sending it; BodyTooLarge as
    soon as more than `limit` bytes have arrived (what was read is dropped, the rest unread)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)
