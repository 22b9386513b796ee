"""What the upstream simulator (usage.proxy.simulator) answers: the refusals a real API gives,
in its order, and deterministic answers made from the request alone. No I/O here."""

from __future__ import annotations

import hashlib
import json
from typing import Any

CREATED = 1_750_000_000
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


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def dump(value: Any) -> bytes:
    # A lone surrogate (sent as a JSON escape) goes back as the same escape: backslashreplace
    # writes it as \udXXX, which is what it is inside a JSON string.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


def seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(dump(parts)).digest()[:8], "big")


def refusal(path: str, authorization: str, body: Any) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]] | None:
    """The error this request gets, if any, in the order a real API checks."""
    key = authorization.removeprefix("Bearer ").strip()
    if not key.startswith("sk-"):
        masked = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
        message = f"Incorrect API key provided: {masked}. You can find your API key in your account settings."
        return 401, error_body(message, "invalid_request_error", "invalid_api_key"), []
    if "disabled" in key:
        return 401, error_body("This API key has been disabled.", "invalid_request_error", "key_disabled"), []
    if "noquota" in key:
        message = "You exceeded your current quota, please check your plan and billing details."
        return 429, error_body(message, "insufficient_quota", "insufficient_quota"), []
    if "ratelimited" in key:
        message = "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1."
        return 429, error_body(message, "requests", "rate_limit_exceeded"), [(b"retry-after", b"20")]
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return 400, error_body("You must provide a model parameter.", "invalid_request_error"), []
    model = body["model"]
    if not model.startswith("sim-"):
        message = f"The model `{model}` does not exist or you do not have access to it."
        return 404, error_body(message, "invalid_request_error", "model_not_found"), []
    if path == "/v1/chat/completions":
        unknown = sorted(set(body) - CHAT_PARAMETERS)
        if unknown:
            message = f"Unrecognized request argument supplied: {unknown[0]}"
            return 400, error_body(message, "invalid_request_error", "unsupported_parameter", unknown[0]), []
        if model == "sim-strict" and "stream_options" in body:
            message = "stream_options is not supported by this model."
            return 400, error_body(message, "invalid_request_error", "unsupported_parameter", "stream_options"), []
        if not body.get("messages"):
            return 400, error_body("'messages' must contain at least one message.", "invalid_request_error"), []
        if model == "sim-moderated":
            last = body["messages"][-1]
            quoted = last.get("content") if isinstance(last, dict) else ""
            message = (
                f"Input rejected by the content filter: '{quoted}'. Key {key} is under review; "
                "write to abuse-desk@upstream.example for help."
            )
            return 400, error_body(message, "invalid_request_error", "content_filter"), []
    return None


def answer_words(body: dict[str, Any], index: int) -> list[str]:
    """The pieces of one choice's answer, one token each."""
    count = body.get("max_completion_tokens") or body.get("max_tokens") or 24
    source = CJK_WORDS if body["model"] == "sim-cjk" else WORDS
    start = seed(body["model"], body.get("messages") or body.get("prompt") or body.get("input"), index)
    pieces = [source[(start + i * 7919) % len(source)] for i in range(count)]
    if source is WORDS:
        return [pieces[0].capitalize()] + [f" {w}" for w in pieces[1:-1]] + [f" {pieces[-1]}."]
    return pieces


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
    return sum(len(t.encode()) for t in texts) // 4 + len(dump(tools)) // 4 * bool(tools) + 7


def usage_of(body: dict[str, Any], completion: int) -> dict[str, Any] | None:
    if body["model"] == "sim-nousage":
        return None
    prompt = prompt_tokens(body)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def tool_call(body: dict[str, Any], index: int) -> tuple[str, str, str]:
    tool = body["tools"][0]
    name = (tool.get("function") or tool).get("name", "tool")
    arguments = dump({"location": "Paris", "unit": "celsius", "choice": index}).decode()
    return f"call_{seed(body['messages'], index) % 10**10}", name, arguments


def _chat_start(body: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
    """Choices to write, the fields every answer to this chat request starts with, and whether
    the choices call a tool."""
    n = int(body.get("n") or 1)
    ident = f"chatcmpl-{seed(body['model'], body['messages']) % 10**20:020d}"
    head = {"id": ident, "object": "chat.completion", "created": CREATED, "model": body["model"]}
    return n, head, bool(body.get("tools")) and body.get("tool_choice") != "none"


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    """The answer to a chat completion that is not streamed."""
    n, head, uses_tools = _chat_start(body)
    choices, completion = [], 0
    for index in range(n):
        if uses_tools:
            call_id, name, arguments = tool_call(body, index)
            calls = [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]
            message = {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}
            completion += len(arguments) // 3 + 5
            finish = "tool_calls"
        else:
            words = answer_words(body, index)
            message = {"role": "assistant", "content": "".join(words), "refusal": None}
            completion += len(words)
            finish = "stop"
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
    payload = head | {"choices": choices, "system_fingerprint": "fp_sim"}
    if (usage := usage_of(body, completion)) is not None:
        payload["usage"] = usage
    return payload


def chat_chunks(body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The events of a streamed chat completion, and how many of them come at the model's pace
    (the closing chunks follow at once)."""
    n, head, uses_tools = _chat_start(body)
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
            call_id, name, arguments = tool_call(body, index)
            first = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            steps = [{"role": "assistant", "content": None, "tool_calls": [first]}]
            parts = [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
            steps += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in parts]
            completion += len(arguments) // 3 + 5
        else:
            words = answer_words(body, index)
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
        events.append(head | {"choices": [], "usage": usage_of(body, completion)})
    return events, paced
