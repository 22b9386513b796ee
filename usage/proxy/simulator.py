"""A local OpenAI-compatible upstream, for trying the proxy, its tests and its benchmark.

A plain ASGI application (served by uvicorn: `manage.py simulate_upstream`). Answers are
deterministic functions of the request, so the same request sent directly and through
the proxy gets byte-for-byte the same answer. Only the `X-Oneapi-Request-Id` header is
new for every call, as a New API console's is (it logs the call under that id).

What it does (README "Logging proxy" lists it too):

- `POST /v1/chat/completions`: streamed or not, `stream_options.include_usage`, `n`
  choices, tool calls when `tools` are sent, `max_tokens` words of output;
- `POST /v1/completions`, `/v1/embeddings`, `/v1/responses` (streamed or not);
- `GET /v1/models`; any method on `/v1/echo/…` answers what it received, with the
  headers a real API behind a CDN adds (a `Set-Cookie`, `Keep-Alive`, rate limits);
- models: `sim-…` are served, anything else is 404 `model_not_found`; `sim-cjk` writes
  Chinese; `sim-nousage` never reports usage; `sim-strict` rejects `stream_options`;
  `sim-broken` answers 500; `sim-slow` answers after `slow_seconds`; `sim-drop` cuts a
  stream off after three chunks; `sim-moderated` refuses with a 400 whose message quotes
  the last message back, with a key and an address (as some providers' content filters do);
- keys: not starting with `sk-` → 401 invalid key; containing `disabled` → 401 key
  disabled; `noquota` → 429 insufficient quota; `ratelimited` → 429 rate limited;
- an unknown request parameter → 400 unsupported parameter; no messages → 400 (other);
- headers `X-Sim-Delay` and `X-Sim-Chunk-Delay` (seconds) override `delay` and
  `chunk_delay` for one request (the benchmark uses them).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from usage.proxy import simulator_answers as answers

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# What OpenAI's API sends besides the body (its CDN sets a cookie on every answer).
UPSTREAM_HEADERS = [
    (b"set-cookie", b"__cf_bm=upstream-cookie; path=/; HttpOnly; Secure; SameSite=None"),
    (b"keep-alive", b"timeout=5"),
    (b"openai-processing-ms", b"3"),
    (b"x-ratelimit-remaining-requests", b"4999"),
]


@dataclass
class Exchange:
    """What the simulator saw of one request, for tests: was it answered in full?"""

    method: str
    path: str
    body: dict[str, Any] | None
    headers: dict[str, str]
    completed: bool = False
    disconnected: bool = False
    # What a New API console answers in X-Oneapi-Request-Id and logs as the call's request_id.
    request_id: str = field(default_factory=lambda: f"{time.strftime('%Y%m%d%H%M%S')}{secrets.token_hex(4)}")


@dataclass
class Simulator:
    """The ASGI application. `delay` and `chunk_delay` (seconds) make it behave like a model
    that thinks before answering and writes at a pace; `log` keeps the last exchanges."""

    delay: float = 0.0
    chunk_delay: float = 0.0
    slow_seconds: float = 30.0
    keep_log: bool = True
    log: list[Exchange] = field(default_factory=list)
    # Console ids to answer the next calls with, first first: a test that must know a call's
    # id before the call is made (a console log row read before the proxy records the call).
    next_request_ids: deque[str] = field(default_factory=deque)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        raw = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        exchange = Exchange(scope["method"], scope["path"], body, headers)
        if self.next_request_ids:
            exchange.request_id = self.next_request_ids.popleft()
        if self.keep_log:
            self.log.append(exchange)
            del self.log[:-1000]
        answer = _Answer(self, scope, receive, send, exchange)
        await answer.run(bytes(raw))


class _Answer:
    def __init__(self, sim: Simulator, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        self.sim, self.scope, self.receive, self.send, self.exchange = sim, scope, receive, send, exchange

    async def json(self, status: int, payload: Any, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]  # a default of () for a list parameter: never mutated
        data = answers.dump(payload)
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"x-request-id", f"req_{answers.seed(payload) % 10**12}".encode()),
                    (b"x-oneapi-request-id", self.exchange.request_id.encode()),
                    *headers,
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": data})
        self.exchange.completed = True

    async def run(self, raw: bytes) -> None:
        path, method, body = self.scope["path"], self.scope["method"], self.exchange.body
        if path.startswith("/v1/echo"):
            query = self.scope.get("query_string", b"").decode()
            echoed = {"method": method, "path": path, "query": query, "body": raw.decode(errors="replace")}
            return await self.json(
                200, echoed | {"authorization": self.exchange.headers.get("authorization")}, UPSTREAM_HEADERS
            )
        if path == "/v1/models" and method == "GET":
            models = ["sim-gpt", "sim-cjk", "sim-nousage", "sim-strict", "sim-broken", "sim-slow", "sim-drop"]
            return await self.json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in models]})
        handlers = {
            "/v1/chat/completions": self.chat,
            "/v1/completions": self.completions,
            "/v1/embeddings": self.embeddings,
            "/v1/responses": self.responses,
        }
        handler = handlers.get(path)
        if handler is None or method != "POST":
            return await self.json(
                404, answers.error_body(f"Unknown request URL: {method} {path}.", "invalid_request_error")
            )
        if (refused := answers.refusal(path, self.exchange.headers.get("authorization", ""), body)) is not None:
            status, payload, headers = refused
            return await self.json(status, payload, headers)
        assert body is not None  # refusal() answers a request without a JSON object
        model = body["model"]
        if model == "sim-broken":
            return await self.json(
                500, answers.error_body("The server had an error while processing your request.", "server_error")
            )
        delay = float(self.exchange.headers.get("x-sim-delay") or self.sim.delay)
        if model == "sim-slow":
            await self._sleep(self.sim.slow_seconds)
        elif delay:
            await self._sleep(delay)
        await handler(body)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, noticing a caller that goes away meanwhile (as a real server would)."""
        waiter = asyncio.ensure_future(self.receive())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=seconds)
            if done and waiter.result()["type"] == "http.disconnect":
                self.exchange.disconnected = True
        finally:
            waiter.cancel()

    # --- Endpoints -----------------------------------------------------------------------

    async def chat(self, body: dict[str, Any]) -> None:
        if not body.get("stream"):
            return await self.json(200, answers.chat_completion(body))
        events, paced = answers.chat_chunks(body)
        await self.stream(events, cut_after=3 if body["model"] == "sim-drop" else None, paced=paced)

    async def stream(self, events: list[Any], cut_after: int | None = None, paced: int | None = None) -> None:
        paced = len(events) if paced is None else paced
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-oneapi-request-id", self.exchange.request_id.encode()),
                ],
            }
        )
        chunk_delay = float(self.exchange.headers.get("x-sim-chunk-delay") or self.sim.chunk_delay)
        # uvicorn answers receive() with http.disconnect once the caller has gone.
        gone = asyncio.ensure_future(self.receive())
        try:
            for number, event in enumerate(events):
                if cut_after is not None and number == cut_after:
                    return  # without finishing the response: uvicorn drops the connection
                name = event.pop("_event", None) if isinstance(event, dict) else None
                frame = (f"event: {name}\n".encode() if name else b"") + b"data: " + answers.dump(event) + b"\n\n"
                await self.send({"type": "http.response.body", "body": frame, "more_body": True})
                # Tokens come at the model's pace; the closing chunks follow at once.
                await asyncio.sleep(chunk_delay if number < paced else 0)  # also lets `gone` see a disconnect
                if gone.done():
                    self.exchange.disconnected = True
                    return
            await self.send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            self.exchange.completed = True
        finally:
            gone.cancel()

    async def completions(self, body: dict[str, Any]) -> None:
        words = answers.answer_words(body, 0)
        ident = f"cmpl-{answers.seed(body['model'], body.get('prompt')) % 10**20:020d}"
        head = {"id": ident, "object": "text_completion", "created": answers.CREATED, "model": body["model"]}
        if body.get("stream"):
            events = [
                head | {"choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": None}]} for w in words
            ]
            events.append(head | {"choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage") and (u := answers.usage_of(body, len(words))):
                events.append(head | {"choices": [], "usage": u})
            return await self.stream(events)
        payload = head | {"choices": [{"index": 0, "text": "".join(words), "logprobs": None, "finish_reason": "stop"}]}
        if (usage := answers.usage_of(body, len(words))) is not None:
            payload["usage"] = usage
        await self.json(200, payload)

    async def embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [((answers.seed(text) >> k) % 1000) / 1000 for k in range(8)],
            }
            for i, text in enumerate(inputs)
        ]
        prompt = sum(len(str(t).encode()) for t in inputs) // 4 + len(inputs)
        payload = {"object": "list", "data": data, "model": body["model"]}
        if body["model"] != "sim-nousage":
            payload["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
        await self.json(200, payload)

    async def responses(self, body: dict[str, Any]) -> None:
        words = answers.answer_words(body, 0)
        text = "".join(words)
        ident = f"resp_{answers.seed(body['model'], body.get('input')) % 10**20:020d}"
        usage = answers.usage_of(body, len(words))
        resp_usage = (
            {
                "input_tokens": usage["prompt_tokens"],
                "output_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"],
            }
            if usage
            else None
        )
        message = {
            "type": "message",
            "id": f"msg_{ident[5:]}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        response = {
            "id": ident,
            "object": "response",
            "created_at": answers.CREATED,
            "status": "completed",
            "model": body["model"],
            "output": [message],
            "usage": resp_usage,
        }
        if not body.get("stream"):
            return await self.json(200, response)
        events: list[Any] = [
            {
                "_event": "response.created",
                "type": "response.created",
                "response": response | {"status": "in_progress", "output": [], "usage": None},
            },
        ]
        events += [
            {
                "_event": "response.output_text.delta",
                "type": "response.output_text.delta",
                "item_id": message["id"],
                "output_index": 0,
                "content_index": 0,
                "delta": w,
            }
            for w in words
        ]
        events.append({"_event": "response.completed", "type": "response.completed", "response": response})
        await self.stream(events)


def run(host: str = "127.0.0.1", port: int = 9100, **options: Any) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    uvicorn.run(Simulator(**options), host=host, port=port, log_level="warning", access_log=False)
