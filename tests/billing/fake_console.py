"""A local fake TOKI console: a real HTTP server on 127.0.0.1 that answers the shapes the
providers answer (README "Billing and provider sync") exactly, and fails on demand.

- `newapi_console`: `/api/status`, `/api/user/self`, `/api/log/self`, `/api/token/`,
  answers wrapped as `{"success", "message", "data"}`; `other` is a JSON *string*;
  `id` changes from one answer to the next; `request_id` is absent on some rows;
  logs are newest first, filtered by type and `[start_timestamp, end_timestamp]`.
- `openai_billing`: `/v1/dashboard/billing/subscription` and `/v1/dashboard/billing/usage`.
- the model catalogue: `/v1/models` (relay key) and the public `/api/pricing`, shaped
  as New API answers them (`tests.billing.fake_catalogue`); `/api/pricing` keeps only the
  models and group ratios of the usable groups, as New API does for a visitor.

Failure modes, queued per path with `fail(path, *modes)`: "timeout" (answers after
`slow_seconds`, longer than the client waits), "429" (with Retry-After), "500",
"502", "401", "403", "truncated" (HTTP 200, JSON cut in half), "success_false"
(HTTP 200, `success: false`), "html" (HTTP 200, an HTML page), "openai_error"
(HTTP 200 with an OpenAI `error` object), "openai_invalid_key" (the same, saying
the key is invalid), "echo_token" (401 whose message quotes the token it was sent).
`between_pages` is called after each log page is served, e.g. to add rows
meanwhile; `ignore_end_timestamp` makes the server ignore the window's end, as a
console that does would, so that new rows shift the pages.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.billing.fake_catalogue import Pricing, model_entry, pricing_answer

ACCESS_TOKEN = "console-access-token-0123456789abcdef"
USER_ID = 4242
RELAY_KEY = "sk-relayKey0123456789abcdefWXYZ"


@dataclass
class LogRow:
    created_at: int
    model_name: str
    prompt_tokens: int
    completion_tokens: int
    quota: int
    token_name: str = "search-prod"
    type: int = 2
    use_time: int = 2
    is_stream: bool = False
    request_id: str | None = None
    other: dict[str, Any] = field(default_factory=dict)
    content: str = ""

    def as_item(self, row_id: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": row_id,
            "user_id": USER_ID,
            "created_at": self.created_at,
            "type": self.type,
            "content": self.content,
            "username": "acme",
            "token_name": self.token_name,
            "model_name": self.model_name,
            "quota": self.quota,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "use_time": self.use_time,
            "is_stream": self.is_stream,
            "channel": 3,
            "channel_name": "upstream-a",
            "token_id": 17,
            "group": "default",
            "ip": "",
            # A JSON object encoded as a string, as the console sends it.
            "other": json.dumps(self.other, separators=(",", ":")),
        }
        if self.request_id is not None:
            item["request_id"] = self.request_id
        return item


@dataclass
class ConsoleState:
    access_token: str = ACCESS_TOKEN
    user_id: int = USER_ID
    relay_key: str = RELAY_KEY
    quota_per_unit: int = 500_000
    quota_display_type: str = "USD"
    usd_exchange_rate: float = 7.3
    quota: int = 25_000_000  # $50.00
    used_quota: int = 5_000_000
    request_count: int = 1200
    logs: list[LogRow] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    user_group: str = "default"
    models: list[dict[str, Any]] = field(
        default_factory=lambda: [model_entry("gpt-4o"), model_entry("deepseek-chat", "deepseek")]
    )
    pricing: list[Pricing] = field(default_factory=list)
    group_ratio: dict[str, float] = field(default_factory=lambda: {"default": 1.0, "vip": 0.8})
    usable_group: dict[str, str] = field(default_factory=lambda: {"default": "默认分组", "vip": "VIP"})
    hard_limit_usd: float = 12.5
    total_usage_cents: float = 312.4
    max_page_size: int = 100
    slow_seconds: float = 2.0
    ignore_end_timestamp: bool = False
    between_pages: Callable[[int], None] | None = None
    failures: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeConsole:
    def __init__(self) -> None:
        self.state = ConsoleState()
        self._ids = itertools.count(random.Random(7).randrange(10_000, 90_000))
        handler = type("Handler", (_Handler,), {"console": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        """The API base an account stores (the console lives at its root)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeConsole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- Scripting ---------------------------------------------------------------------

    def fail(self, path: str, *modes: str) -> None:
        """The next requests to `path` fail with these modes, in order."""
        with self.state.lock:
            self.state.failures[path].extend(modes)

    def add_logs(self, *rows: LogRow) -> None:
        with self.state.lock:
            self.state.logs.extend(rows)

    def requests_to(self, path: str) -> list[dict[str, str]]:
        return [query for p, query, _ in self.state.requests if p == path]

    def headers_sent(self) -> Iterator[dict[str, str]]:
        return (headers for _, _, headers in self.state.requests)

    def next_id(self) -> int:
        return next(self._ids)


class _Handler(BaseHTTPRequestHandler):
    console: FakeConsole
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- Plumbing ------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeouts)

    def _json(self, status: int, payload: Any, **headers: str) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode(), **headers)

    def _ok(self, data: Any) -> None:
        self._json(200, {"success": True, "message": "", "data": data})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        state = self.console.state
        with state.lock:
            state.requests.append((path, query, dict(self.headers.items())))
            mode = state.failures[path].popleft() if state.failures[path] else None
        if mode is not None and self._fail(mode, path):
            return
        routes = {
            "/api/status": self._status,
            "/api/user/self": self._user,
            "/api/log/self": self._logs,
            "/api/token/": self._keys,
            "/v1/dashboard/billing/subscription": self._subscription,
            "/v1/dashboard/billing/usage": self._usage,
            "/v1/models": self._models,
            "/api/pricing": self._pricing,
        }
        route = routes.get(path)
        if route is None:
            self._json(404, {"success": False, "message": "not found"})
            return
        route(query)

    def _fail(self, mode: str, path: str) -> bool:
        """Answers a scripted failure; False when the mode only delays the real answer."""
        state = self.console.state
        if mode == "timeout":
            time.sleep(state.slow_seconds)
            return False
        if mode == "429":
            self._json(429, {"error": {"message": "Too many requests", "type": "rate_limit"}}, Retry_After="1")
        elif mode in ("500", "502"):
            self._send(int(mode), b"<html><body>Internal Server Error</body></html>", "text/html")
        elif mode in ("401", "403"):
            self._json(int(mode), {"success": False, "message": "无权进行此操作，access token 无效"})
        elif mode == "echo_token":
            sent = self.headers.get("Authorization", "")
            self._json(401, {"success": False, "message": f"invalid token {sent}", "error": {"message": sent}})
        elif mode == "truncated":
            body = json.dumps({"success": True, "message": "", "data": {"quota": 1, "items": [1, 2, 3]}}).encode()
            self._send(200, body[: len(body) // 2])
        elif mode == "success_false":
            self._json(200, {"success": False, "message": "系统繁忙，请稍后再试"})
        elif mode == "html":
            self._send(200, b"<!doctype html><title>Login</title>", "text/html")
        elif mode == "openai_error":
            self._json(200, {"error": {"message": "billing is not enabled", "type": "server_error", "code": None}})
        elif mode == "openai_invalid_key":
            self._json(
                200,
                {
                    "error": {
                        "message": "Incorrect API key provided: sk-r****WXYZ.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
        else:
            raise AssertionError(f"unknown failure mode {mode!r}")
        return True

    def _authorised_console(self) -> bool:
        state = self.console.state
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token != state.access_token:
            self._json(401, {"success": False, "message": "无权进行此操作，access token 无效"})
            return False
        if self.headers.get("New-Api-User") != str(state.user_id):
            self._json(401, {"success": False, "message": "无权进行此操作，New-Api-User 与登录用户不匹配"})
            return False
        return True

    # --- newapi_console ------------------------------------------------------------------

    def _status(self, query: dict[str, str]) -> None:
        state = self.console.state
        self._ok(
            {
                "system_name": "TOKI",
                "quota_per_unit": state.quota_per_unit,
                "quota_display_type": state.quota_display_type,
                "usd_exchange_rate": state.usd_exchange_rate,
                "display_in_currency": True,
            }
        )

    def _user(self, query: dict[str, str]) -> None:
        if not self._authorised_console():
            return
        state = self.console.state
        self._ok(
            {
                "id": state.user_id,
                "username": "acme",
                "group": state.user_group,
                "quota": state.quota,
                "used_quota": state.used_quota,
                "request_count": state.request_count,
                "access_token": state.access_token,  # the console does echo it; it must never be stored
            }
        )

    def _page(self, query: dict[str, str]) -> tuple[int, int]:
        page = max(int(query.get("p", "1") or 1), 1)
        size = min(max(int(query.get("page_size", "10") or 10), 1), self.console.state.max_page_size)
        return page, size

    def _logs(self, query: dict[str, str]) -> None:
        if not self._authorised_console():
            return
        state = self.console.state
        page, size = self._page(query)
        log_type = int(query.get("type", "0") or 0)
        start = int(query.get("start_timestamp", "0") or 0)
        end = int(query.get("end_timestamp", "0") or 0)
        with state.lock:
            rows = [
                (position, row)
                for position, row in enumerate(state.logs)
                if (not log_type or row.type == log_type)
                and (not start or row.created_at >= start)
                and (state.ignore_end_timestamp or not end or row.created_at <= end)
            ]
            # Newest first; rows written later come first among equal times.
            rows.sort(key=lambda pr: (pr[1].created_at, pr[0]), reverse=True)
            chosen = rows[(page - 1) * size : page * size]
            items = [row.as_item(self.console.next_id()) for _, row in chosen]  # ids differ on every answer
        if state.between_pages is not None:
            state.between_pages(page)  # after this page is chosen, before the next one is
        self._ok({"page": page, "page_size": size, "total": len(rows), "items": items})

    def _keys(self, query: dict[str, str]) -> None:
        if not self._authorised_console():
            return
        state = self.console.state
        page, size = self._page(query)
        keys = state.keys[(page - 1) * size : page * size]
        self._ok({"page": page, "page_size": size, "total": len(state.keys), "items": keys})

    # --- openai_billing ------------------------------------------------------------------

    def _authorised_relay(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.console.state.relay_key}":
            self._json(401, {"error": {"message": "Invalid token", "type": "invalid_request_error"}})
            return False
        return True

    def _subscription(self, query: dict[str, str]) -> None:
        if not self._authorised_relay():
            return
        limit = self.console.state.hard_limit_usd
        self._json(
            200,
            {
                "object": "billing_subscription",
                "hard_limit_usd": limit,
                "soft_limit_usd": limit,
                "system_hard_limit_usd": limit,
                "has_payment_method": True,
                "access_until": 0,
            },
        )

    def _usage(self, query: dict[str, str]) -> None:
        if not self._authorised_relay():
            return
        self._json(200, {"object": "list", "total_usage": self.console.state.total_usage_cents})

    # --- Model catalogue -----------------------------------------------------------------

    def _models(self, query: dict[str, str]) -> None:
        if not self._authorised_relay():
            return
        with self.console.state.lock:
            data = [dict(entry) for entry in self.console.state.models]
        self._json(200, {"success": True, "data": data, "object": "list"})

    def _pricing(self, query: dict[str, str]) -> None:
        """What a visitor (no session) gets: the usable groups' models and ratios only."""
        state = self.console.state
        with state.lock:
            usable = dict(state.usable_group)
            visible = []
            for item in state.pricing:
                groups = [g for g in item.enable_groups if g in usable or g == "all"]
                if groups:
                    visible.append(Pricing(**{**item.__dict__, "enable_groups": groups}))
            ratios = {g: r for g, r in state.group_ratio.items() if g in usable}
        self._json(200, pricing_answer(visible, ratios, usable))
