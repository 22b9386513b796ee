"""The ASGI application of the logging proxy: `/proxy/v1/…` and `/proxy/<account>/v1/…`.

It is mounted in front of Django (`with_proxy` in toki_dashboard.asgi) rather than
served by a Django view: Django's ASGI handler costs a thread hand-off per request
(the request_started/finished signals and the synchronous middleware run in a thread
per request), about 3.7 ms per call on the 2-core reference machine, more than the
whole latency budget of the proxy (bench/README.md). Here a call costs no database query
and no thread: accounts are cached, records are written in the background.

Callers authenticate upstream with their own key, which is forwarded untouched; there
is no session, CSRF or login involved (those protect the dashboard's pages).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection

from usage import metrics
from usage.models import Account
from usage.proxy import budgets, forwarding, hygiene, measure
from usage.proxy.callers import CallerTokens
from usage.proxy.recorder import Call, Recorder

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/proxy/"
ROUTE = re.compile(r"^/proxy/(?:(?P<slug>[-a-zA-Z0-9_]+)/)?v1(?P<rest>/.*)?$")
MISSING_ACCOUNT_SECONDS = 5.0  # an unknown slug is looked up again this soon
SWITCH_INTERVAL_SECONDS = 0.001


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the proxy needs of an account."""

    account_id: int
    slug: str
    base_url: str


class AccountsUnavailable(Exception):
    pass


def _lookup(slug: str | None) -> Upstream | None:
    accounts = Account.objects.order_by("pk")
    try:
        row = (accounts.filter(slug=slug) if slug else accounts).values("pk", "slug", "base_url").first()
    except Exception:
        connection.close()  # a fresh connection next time
        raise
    return Upstream(row["pk"], row["slug"], row["base_url"]) if row else None


def _close_connection() -> None:
    connection.close()  # looked up in the calling thread: each thread has its own


class Accounts:
    """Account lookups cached for TOKI_PROXY_ACCOUNT_CACHE_SECONDS, so a call costs no query;
    while the database is unavailable the last known answer keeps serving."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._cache: dict[str | None, tuple[Upstream | None, float]] = {}

    async def get(self, slug: str | None) -> Upstream | None:
        cached = self._cache.get(slug)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            found = await asyncio.get_running_loop().run_in_executor(self._executor, _lookup, slug)
        except Exception as exc:
            if cached is not None:
                return cached[0]
            raise AccountsUnavailable(str(exc)) from exc
        ttl = settings.TOKI_PROXY_ACCOUNT_CACHE_SECONDS if found is not None else MISSING_ACCOUNT_SECONDS
        self._cache[slug] = (found, now + ttl)
        return found


class Runtime:
    """What one event loop shares between calls: the HTTP client, the recorder, the
    account cache, and the models found to refuse `stream_options`."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = forwarding.new_client()
        self.recorder = Recorder()
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="toki-proxy-db")
        self.accounts = Accounts(self.db)
        self.tokens = CallerTokens(self.db)
        self.budgets = budgets.BudgetGate(self.db)
        self.refuses_usage_option: set[tuple[int, str]] = set()

    async def close(self) -> None:
        await self.recorder.close()
        await self.client.aclose()
        await self.loop.run_in_executor(self.db, _close_connection)
        self.db.shutdown(wait=True)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A call that passed the proxy's checks, with what forwarding it needs."""

    upstream: Upstream
    path: hygiene.ForwardPath
    caller: hygiene.CallerHeaders
    body: bytes
    started: float
    occurred_at: datetime


async def _refuse(send: Send, status: int, message: str, code: str, kind: str = "invalid_request_error") -> None:
    await forwarding.send_error(send, status, message, kind, code)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class ProxyApp:
    """The proxy's ASGI application; one per process, with one Runtime per event loop."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None

    def runtime(self) -> Runtime:
        loop = asyncio.get_running_loop()
        if self._runtime is None or self._runtime.loop is not loop:
            self._runtime = Runtime()
        return self._runtime

    async def shutdown(self) -> None:
        """Write what is still queued and close the client (the server's lifespan shutdown)."""
        runtime, self._runtime = self._runtime, None
        if runtime is not None and runtime.loop is asyncio.get_running_loop():
            await runtime.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every answer the proxy gives itself is an OpenAI-style error, an unexpected failure too."""
        try:
            runtime = self.runtime()
            admitted = await self._admit(scope, receive, send, runtime)
            if admitted is not None:
                await self._forward(scope, receive, send, runtime, admitted)
        except Exception:
            logger.exception("proxy: the call failed")
            # When the answer has begun already, this is refused and the connection just ends.
            with contextlib.suppress(Exception):
                message = "The proxy failed to handle this request; the failure has been logged."
                await forwarding.send_error(send, 500, message, "server_error", "proxy_error")

    async def _admit(self, scope: Scope, receive: Receive, send: Send, runtime: Runtime) -> Admitted | None:
        """The call to forward, once its path, account, caller and body pass; else None, answered."""
        started = time.perf_counter()
        occurred_at = datetime.now(UTC)
        route = ROUTE.match(scope["path"])
        slug = route["slug"] if route else None
        raw_path = scope.get("raw_path") or scope["path"].encode()
        prefix = [b"proxy", slug.encode(), b"v1"] if slug else [b"proxy", b"v1"]
        if route is None or not hygiene.prefix_matches(raw_path, prefix):
            message = "Unknown proxy path: use /proxy/v1/… or /proxy/<account-slug>/v1/…."
            await _refuse(send, 404, message, "unknown_url")
            return None
        try:
            path = hygiene.forward_path(raw_path, len(prefix))
        except hygiene.BadPath as exc:
            await _refuse(send, 400, str(exc), "invalid_path")
            return None
        try:
            upstream = await runtime.accounts.get(slug)
        except AccountsUnavailable:
            message = "The dashboard's database is unavailable and this account is not known yet; retry shortly."
            await _refuse(send, 503, message, "proxy_unavailable", "server_error")
            return None
        if upstream is None:
            message = f"No TOKI account with slug {slug!r}." if slug else "No TOKI account is set up in the dashboard."
            await _refuse(send, 404, message, "account_not_found")
            return None
        caller = hygiene.caller_headers(scope["headers"], settings.TOKI_PROXY_FORWARD_HEADERS)
        if settings.PROXY_REQUIRE_TOKEN:
            try:
                refusal = await runtime.tokens.refusal(caller.dashboard_token, upstream.account_id)
            except Exception:
                message = "The dashboard's database is unavailable to check the X-Toki-Token header; retry shortly."
                await _refuse(send, 503, message, "proxy_unavailable", "server_error")
                return None
            if refusal is not None:
                kind = "invalid_request_error" if refusal.status == 401 else "permission_error"
                await _refuse(send, refusal.status, refusal.message, refusal.code, kind)
                return None
        limit = settings.PROXY_MAX_BODY_BYTES
        try:
            if caller.declared_length is not None and caller.declared_length > limit:
                raise hygiene.BodyTooLarge(caller.declared_length)
            body = await hygiene.read_body(receive, limit)
        except hygiene.BodyTooLarge:
            # Nothing reached upstream and no tokens were used: no UsageRecord (README, "Limits").
            logger.warning("proxy: refused a request body over %d bytes for account %s", limit, upstream.slug)
            message = f"The request body is larger than this proxy accepts ({limit:,} bytes)."
            await _refuse(send, 413, message, "request_too_large")
            return None
        if body is None:
            return None  # the caller left before sending its request: nothing was forwarded
        return Admitted(upstream, path, caller, body, started, occurred_at)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, runtime: Runtime, admitted: Admitted) -> None:
        upstream, path, caller, body, started = (
            admitted.upstream,
            admitted.path,
            admitted.caller,
            admitted.body,
            admitted.started,
        )
        method = scope["method"]
        query = scope.get("query_string") or b""
        url = upstream.base_url.rstrip("/") + path.raw + ("?" + query.decode("latin-1") if query else "")

        call, inject = self._call_to_record(runtime, admitted, method)
        if call is not None and await self._refused_by_budget(send, runtime, admitted, call):
            return
        forwarder = forwarding.Forwarder(
            runtime.client,
            method=method,
            url=url,
            headers=caller.forward,
            body=body,
            call=call,
            started=started,
            inject_usage=inject,
        )
        metrics.record_forwarding(started)
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()
        watcher = asyncio.create_task(self._watch_disconnect(receive, forwarder, task, gone))
        try:
            await forwarder.forward(send)
        except asyncio.CancelledError:
            if not gone.is_set():
                if call is not None:  # the server is stopping: the call is cut short
                    call.failure = (503, "server_error", "proxy_shutdown", "The proxy stopped before the call ended.")
                raise
            task.uncancel()
            if call is not None:
                call.failure = (499, "client_cancelled", "client_cancelled", "The caller closed the connection.")
                call.latency_ms = int((time.perf_counter() - started) * 1000)
        finally:
            watcher.cancel()
            if forwarder.usage_option_rejected and call is not None:
                runtime.refuses_usage_option.add((upstream.account_id, str(call.request_json.get("model"))))
            if call is not None:
                metrics.record_proxy_call(call.failure[0] if call.failure else call.status)
                runtime.recorder.submit(call)

    @staticmethod
    def _call_to_record(runtime: Runtime, admitted: Admitted, method: str) -> tuple[Call | None, bool]:
        """The Call the recorder will store for this request (None: a request that is not
        recorded), and whether the upstream is asked to report a stream's usage."""
        account_id, body, path_text = admitted.upstream.account_id, admitted.body, admitted.path.text
        kind = measure.recorded_kind(method, path_text)
        call, inject = None, False
        if kind is not None:
            call = Call(
                account_id=account_id,
                kind=kind,
                endpoint="/v1" + path_text,
                occurred_at=admitted.occurred_at,
                request_body=body,
                api_key=admitted.caller.authorization,
                metadata=admitted.caller.tags,
            )
            # Only streams need the body read now; everything else is measured later.
            if b'"stream"' in body and (parsed := _json_object(body)) is not None and parsed.get("stream") is True:
                call.stream, call.request_json = True, parsed
                options = parsed.get("stream_options")
                asked = isinstance(options, dict) and options.get("include_usage") is True
                inject = (
                    kind in (measure.CHAT, measure.COMPLETIONS)
                    and settings.TOKI_PROXY_FORCE_STREAM_USAGE
                    and not asked
                    and (account_id, str(parsed.get("model"))) not in runtime.refuses_usage_option
                )
        return call, inject

    @staticmethod
    async def _refused_by_budget(send: Send, runtime: Runtime, admitted: Admitted, call: Call) -> bool:
        """An enforced, exhausted budget refuses the call (429, recorded); see usage.proxy.budgets."""
        caller = admitted.caller
        block = await runtime.budgets.block(
            admitted.upstream.account_id, caller.authorization, caller.tags.get("team"), admitted.body
        )
        if block is None:
            return False
        status, kind, code, message = call.failure = budgets.refusal(block)
        await forwarding.send_error(send, status, message, kind, code)
        call.latency_ms = int((time.perf_counter() - admitted.started) * 1000)
        metrics.PROXY_BUDGET_REFUSALS.inc()
        metrics.record_proxy_call(status)
        runtime.recorder.submit(call)
        return True

    @staticmethod
    async def _watch_disconnect(
        receive: Receive, forwarder: forwarding.Forwarder, task: asyncio.Task[Any], gone: asyncio.Event
    ) -> None:
        """Cancel the exchange when the caller goes away before its response is complete;
        cancelling closes the upstream request too."""
        while (await receive())["type"] != "http.disconnect":
            pass
        if not forwarder.finished:
            gone.set()
            task.cancel()


def with_proxy(django_app: ASGIApp) -> ASGIApp:
    """The site's ASGI application: `/proxy/…` goes to the proxy, everything else to Django.

    The lifespan protocol, which Django does not speak, lets the proxy flush its
    queued records and close its connections when the server stops.
    """
    proxy = ProxyApp()

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await proxy(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(proxy, receive, send)
        else:
            await django_app(scope, receive, send)

    application.proxy = proxy  # type: ignore[attr-defined]  # for tests and benchmarks
    return application


async def _lifespan(proxy: ProxyApp, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Everything loaded so far lives as long as the process: keep it out of the
            # cyclic collector's reach, whose full passes over it took 50 ms at a time.
            gc.collect()
            gc.freeze()
            # The recorder's writer thread holds the GIL while it builds rows; a shorter
            # switch interval (default 5 ms) bounds how long the event loop waits for it.
            sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await proxy.shutdown()
            except Exception:
                logger.exception("proxy: shutdown failed")
            await send({"type": "lifespan.shutdown.complete"})
            return
