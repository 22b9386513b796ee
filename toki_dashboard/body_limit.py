"""Request bodies of the dashboard (pages and API) counted while they stream in.

Django's ASGI handler reads a whole body into a temporary file before any view runs,
and a chunked upload has no Content-Length to refuse it by: a 300 MB body would be
written to disk before the ingestion API could say it is too large. Here the body is
counted as it arrives, and past DATA_UPLOAD_MAX_MEMORY_SIZE the request is answered
413 at once; the rest is never read. (The logging proxy, mounted in front of this, has
its own limit.)

The Import page's upload is the one exception: its body may be as large as an import
file may be (IMPORT_MAX_UPLOAD_MB, plus room for the form around it), and a larger one
is refused with a message that says so. Only a request with a logged-in session gets
that room (Django's ASGI handler spools the whole body before any view checks who asks);
the view then checks the role.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY as SESSION_USER_KEY
from django.db import connection
from django.urls import reverse

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


def too_large_message(limit: int) -> str:
    return f"Body is larger than {limit // (1024 * 1024)} MB."


MULTIPART_ROOM_BYTES = 1024 * 1024  # the form fields and part headers around an import file


def _session_key(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            cookies = SimpleCookie()
            try:
                cookies.load(value.decode("latin-1"))
            except CookieError:
                return ""
            if morsel := cookies.get(settings.SESSION_COOKIE_NAME):
                return morsel.value
    return ""


def _logged_in(session_key: str) -> bool:
    if not session_key:
        return False
    engine = import_module(settings.SESSION_ENGINE)
    try:
        return bool(engine.SessionStore(session_key).get(SESSION_USER_KEY))
    finally:
        # Outside Django's request cycle nothing else would give the connection back (to the
        # web process's pool) or notice that it broke: this thread lives as long as the process.
        connection.close()


async def _limit_for(scope: Scope) -> tuple[int | None, str]:
    """The largest body for this request's path, and the message refusing a larger one."""
    if (
        scope.get("method") == "POST"
        and scope["path"] == reverse("usage:imports")
        and await sync_to_async(_logged_in)(_session_key(scope))
    ):
        from usage.import_jobs.upload import too_large_message as import_too_large
        from usage.import_jobs.upload import upload_limit_bytes

        return upload_limit_bytes() + MULTIPART_ROOM_BYTES, import_too_large()
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return limit, too_large_message(limit) if limit is not None else ""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(scope: Scope, send: Send, message: str) -> None:
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
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit, message = await _limit_for(scope)
        if limit is None:
            await app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, message)
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
            await _refuse(scope, send, message)

    return limited
