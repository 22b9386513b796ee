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
import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CREATED = 1_750_000_000
# What OpenAI's API sends besides the body (its CDN sets a cookie on every answer).
UPSTREAM_HEADERS = [
    (b"set-cookie", b"__cf_bm=upstream-cookie; path=/; HttpOnly; Secure; SameSite=None"),
    (b"keep-alive", b"timeout=5"),
    (b"openai-processing-ms", b"3"),
    (b"x-ratelimit-remaining-requests", b"4999"),
]
CHAT_PARAMETERS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "user",
    "seed",
    "stop",
    "response_format",
    "parallel_tool_calls",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "metadata",
}
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "curious",
    "engineers",
    "measure",
    "every",
    "token",
    "that",
    "crosses",
    "the",
    "proxy,",
    "counting",
    "characters,",
    "bytes",
    "and",
    "messages",
    "without",
    "ever",
    "keeping",
    "a",
    "word",
]
CJK_WORDS = list("我们在这里测量每一个字符的长度而不保存任何内容模型回答问题时会产生很多文字") + ["，", "。"]


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


def _error(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _dump(value: Any) -> bytes:
    # A lone surrogate (sent as a JSON escape) goes back as the same escape: backslashreplace
    # writes it as \udXXX, which is what it is inside a JSON string.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(_dump(parts)).digest()[:8], "big")


class _Answer:
    def __init__(self, sim: Simulator, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        self.sim, self.scope, self.receive, self.send, self.exchange = sim, scope, receive, send, exchange

    async def json(self, status: int, payload: Any, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]  # a default of () for a list parameter: never mutated
        data = _dump(payload)
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"x-request-id", f"req_{_seed(payload) % 10**12}".encode()),
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
            return await self.json(404, _error(f"Unknown request URL: {method} {path}.", "invalid_request_error"))
        if (refused := self.refusal(body)) is not None:
            status, payload, headers = refused
            return await self.json(status, payload, headers)
        assert body is not None  # refusal() answers a request without a JSON object
        model = body["model"]
        if model == "sim-broken":
            return await self.json(
                500, _error("The server had an error while processing your request.", "server_error")
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

    def refusal(self, body: Any) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]] | None:
        """The error this request gets, if any, in the order a real API checks."""
        auth = self.exchange.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        if not key.startswith("sk-"):
            masked = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
            message = f"Incorrect API key provided: {masked}. You can find your API key in your account settings."
            return 401, _error(message, "invalid_request_error", "invalid_api_key"), []
        if "disabled" in key:
            return 401, _error("This API key has been disabled.", "invalid_request_error", "key_disabled"), []
        if "noquota" in key:
            message = "You exceeded your current quota, please check your plan and billing details."
            return 429, _error(message, "insufficient_quota", "insufficient_quota"), []
        if "ratelimited" in key:
            message = "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1."
            return 429, _error(message, "requests", "rate_limit_exceeded"), [(b"retry-after", b"20")]
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return 400, _error("You must provide a model parameter.", "invalid_request_error"), []
        model = body["model"]
        if not model.startswith("sim-"):
            message = f"The model `{model}` does not exist or you do not have access to it."
            return 404, _error(message, "invalid_request_error", "model_not_found"), []
        if self.scope["path"] == "/v1/chat/completions":
            unknown = sorted(set(body) - CHAT_PARAMETERS)
            if unknown:
                message = f"Unrecognized request argument supplied: {unknown[0]}"
                return 400, _error(message, "invalid_request_error", "unsupported_parameter", unknown[0]), []
            if model == "sim-strict" and "stream_options" in body:
                message = "stream_options is not supported by this model."
                return 400, _error(message, "invalid_request_error", "unsupported_parameter", "stream_options"), []
            if not body.get("messages"):
                return 400, _error("'messages' must contain at least one message.", "invalid_request_error"), []
            if model == "sim-moderated":
                last = body["messages"][-1]
                quoted = last.get("content") if isinstance(last, dict) else ""
                message = (
                    f"Input rejected by the content filter: '{quoted}'. Key {key} is under review; "
                    "write to abuse-desk@upstream.example for help."
                )
                return 400, _error(message, "invalid_request_error", "content_filter"), []
        return None

    # --- Content ---------------------------------------------------------------------

    def words(self, body: dict[str, Any], index: int) -> list[str]:
        """The pieces of one choice's answer, one token each."""
        count = body.get("max_completion_tokens") or body.get("max_tokens") or 24
        source = CJK_WORDS if body["model"] == "sim-cjk" else WORDS
        seed = _seed(body["model"], body.get("messages") or body.get("prompt") or body.get("input"), index)
        pieces = [source[(seed + i * 7919) % len(source)] for i in range(count)]
        if source is WORDS:
            return [pieces[0].capitalize()] + [f" {w}" for w in pieces[1:-1]] + [f" {pieces[-1]}."]
        return pieces

    @staticmethod
    def prompt_tokens(body: dict[str, Any]) -> int:
        texts: list[str] = []
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(p.get("text", "") for p in content if isinstance(p, dict))
        for key in ("prompt", "input", "instructions"):
            value = body.get(key)
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                texts.extend(v for v in value if isinstance(v, str))
        tools = body.get("tools") or []
        return sum(len(t.encode()) for t in texts) // 4 + len(_dump(tools)) // 4 * bool(tools) + 7

    def usage(self, body: dict[str, Any], completion: int) -> dict[str, Any] | None:
        if body["model"] == "sim-nousage":
            return None
        prompt = self.prompt_tokens(body)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    @staticmethod
    def tool_call(body: dict[str, Any], index: int) -> tuple[str, str, str]:
        tool = body["tools"][0]
        name = (tool.get("function") or tool).get("name", "tool")
        arguments = _dump({"location": "Paris", "unit": "celsius", "choice": index}).decode()
        return f"call_{_seed(body['messages'], index) % 10**10}", name, arguments

    # --- Endpoints -----------------------------------------------------------------------

    async def chat(self, body: dict[str, Any]) -> None:
        n = int(body.get("n") or 1)
        ident = f"chatcmpl-{_seed(body['model'], body['messages']) % 10**20:020d}"
        head = {"id": ident, "object": "chat.completion", "created": CREATED, "model": body["model"]}
        uses_tools = bool(body.get("tools")) and body.get("tool_choice") != "none"
        if not body.get("stream"):
            choices, completion = [], 0
            for index in range(n):
                if uses_tools:
                    call_id, name, arguments = self.tool_call(body, index)
                    calls = [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]
                    message = {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}
                    completion += len(arguments) // 3 + 5
                    finish = "tool_calls"
                else:
                    words = self.words(body, index)
                    message = {"role": "assistant", "content": "".join(words), "refusal": None}
                    completion += len(words)
                    finish = "stop"
                choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
            payload = head | {"choices": choices, "system_fingerprint": "fp_sim"}
            if (usage := self.usage(body, completion)) is not None:
                payload["usage"] = usage
            return await self.json(200, payload)

        options = body.get("stream_options") or {}
        with_usage = bool(options.get("include_usage")) and body["model"] != "sim-nousage"
        head = head | {"object": "chat.completion.chunk", "system_fingerprint": "fp_sim"}

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            payload = head | {"choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return payload | {"usage": None} if with_usage else payload

        deltas: list[list[dict[str, Any]]] = []
        steps: list[dict[str, Any]]
        completion = 0
        for index in range(n):
            if uses_tools:
                call_id, name, arguments = self.tool_call(body, index)
                first = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                steps = [{"role": "assistant", "content": None, "tool_calls": [first]}]
                parts = [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
                steps += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in parts]
                completion += len(arguments) // 3 + 5
            else:
                words = self.words(body, index)
                steps = [{"role": "assistant", "content": "", "refusal": None}] + [{"content": w} for w in words]
                completion += len(words)
            deltas.append(steps)
        events = [
            chunk(i, step)
            for position in range(max(map(len, deltas)))
            for i in range(n)
            if position < len(deltas[i])
            for step in [deltas[i][position]]
        ]
        paced = len(events)
        events += [chunk(i, {}, "tool_calls" if uses_tools else "stop") for i in range(n)]
        if with_usage:
            events.append(head | {"choices": [], "usage": self.usage(body, completion)})
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
                frame = (f"event: {name}\n".encode() if name else b"") + b"data: " + _dump(event) + b"\n\n"
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
        words = self.words(body, 0)
        ident = f"cmpl-{_seed(body['model'], body.get('prompt')) % 10**20:020d}"
        head = {"id": ident, "object": "text_completion", "created": CREATED, "model": body["model"]}
        if body.get("stream"):
            events = [
                head | {"choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": None}]} for w in words
            ]
            events.append(head | {"choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage") and (u := self.usage(body, len(words))):
                events.append(head | {"choices": [], "usage": u})
            return await self.stream(events)
        payload = head | {"choices": [{"index": 0, "text": "".join(words), "logprobs": None, "finish_reason": "stop"}]}
        if (usage := self.usage(body, len(words))) is not None:
            payload["usage"] = usage
        await self.json(200, payload)

    async def embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [
            {"object": "embedding", "index": i, "embedding": [((_seed(text) >> k) % 1000) / 1000 for k in range(8)]}
            for i, text in enumerate(inputs)
        ]
        prompt = sum(len(str(t).encode()) for t in inputs) // 4 + len(inputs)
        payload = {"object": "list", "data": data, "model": body["model"]}
        if body["model"] != "sim-nousage":
            payload["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
        await self.json(200, payload)

    async def responses(self, body: dict[str, Any]) -> None:
        words = self.words(body, 0)
        text = "".join(words)
        ident = f"resp_{_seed(body['model'], body.get('input')) % 10**20:020d}"
        usage = self.usage(body, len(words))
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
            "created_at": CREATED,
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
    import uvicorn

    uvicorn.run(Simulator(**options), host=host, port=port, log_level="warning", access_log=False)
