"""Request bodies of the dashboard (pages and API) counted while they stream in.

Django's ASGI handler reads a whole body into a temporary file before any view runs,
and a chunked upload has no Content-Length to refuse it by: a 300 MB body would be
written to disk before the ingestion API could say it is too large. Here the body is
counted as it arrives, and past DATA_UPLOAD_MAX_MEMORY_SIZE the request is answered
413 at once; the rest is never read. (The logging proxy, mounted in front of this, has
its own limit.)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


def too_large_message(limit: int) -> str:
    return f"Body is larger than {limit // (1024 * 1024)} MB."


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    message = too_large_message(limit)
    if scope["path"].startswith("/api/"):
        body, content_type = json.dumps({"detail": message}).encode(), b"application/json"
    else:
        body, content_type = f"413 {message}\n".encode(), b"text/plain; charset=utf-8"
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def limit_body(app: ASGIApp) -> ASGIApp:
    """`app` behind a body limit of DATA_UPLOAD_MAX_MEMORY_SIZE bytes."""

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if scope["type"] != "http" or limit is None:
            await app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, limit)
            return
        received = 0

        async def counted() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        try:
            await app(scope, counted, send)
        except BodyTooLarge:  # raised while Django read the body: nothing was sent yet
            await _refuse(scope, send, limit)

    return limited
