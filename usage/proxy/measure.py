"""What the proxy logs about a call's text: lengths and character-class profiles, never the text.

Pure functions over parsed request and response JSON, used by the recorder after the
response has reached the caller. `profile` is the contract of docs/api.md (Character-class profile) and is the
one piece that runs over every character, so it never loops in Python per character:
one `bytes.translate` turns the UTF-8 text into one class byte per code point and
`bytes.count` does the counting, in C. Only lead bytes that need a second look (a few
Unicode spaces, Hangul, full-width forms) trigger a regular expression, and only when
present.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from usage.estimation.features import CLASSES

# --- Character classes -------------------------------------------------------------

# One class byte per code point: ASCII bytes map to their class, the lead byte of a
# multi-byte sequence to "C" (always CJK), "N" (never CJK nor a space) or a lowercase
# byte naming a lead whose class depends on what follows; continuation bytes are deleted.
_ASCII_CODES = {"letters": b"L", "digits": b"D", "spaces": b"S", "punct": b"P", "other": b"O"}
_CJK_LEADS = {0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEB, 0xEC}  # U+3000–U+9FFF, U+B000–U+CFFF
_SECOND_LOOK = {0xC2: b"a", 0xE1: b"b", 0xE2: b"c", 0xEA: b"e", 0xED: b"f", 0xEF: b"g"}


def _ascii_class(code: int) -> str:
    char = chr(code)
    if char.isascii() and char.isalpha():
        return "letters"
    if "0" <= char <= "9":
        return "digits"
    if char.isspace():
        return "spaces"
    if 0x21 <= code <= 0x7E:
        return "punct"
    return "other"


def _class_table() -> bytes:
    table = bytearray(256)
    for byte in range(256):
        if byte < 0x80:
            table[byte] = _ASCII_CODES[_ascii_class(byte)][0]
        elif byte in _CJK_LEADS:
            table[byte] = ord("C")
        elif byte in _SECOND_LOOK:
            table[byte] = _SECOND_LOOK[byte][0]
        else:
            table[byte] = ord("N")
    return bytes(table)


_TABLE = _class_table()
_CONTINUATION = bytes(range(0x80, 0xC0))
# Non-ASCII whitespace (str.isspace) outside the CJK ranges: U+0085, U+00A0, U+1680,
# U+2000–U+200A, U+2028, U+2029, U+202F, U+205F. (U+3000 is CJK by the contract's ranges,
# which are listed first.)
_C2_SPACES = re.compile(rb"\xc2[\x85\xa0]")
_OGHAM_SPACE = b"\xe1\x9a\x80"
_E2_SPACES = re.compile(rb"\xe2(?:\x80[\x80-\x8a\xa8\xa9\xaf]|\x81\x9f)")
# CJK sequences behind shared lead bytes: U+AC00–U+AFFF, U+D000–U+D7AF, U+F900–U+FAFF, U+FF00–U+FFEF.
_EA_CJK = re.compile(rb"\xea[\xb0-\xbf]")
_ED_CJK = re.compile(rb"\xed(?:[\x80-\x9d]|\x9e[\x80-\xaf])")
_EF_CJK = re.compile(rb"\xef(?:[\xa4-\xab\xbc-\xbe]|\xbf[\x80-\xaf])")


def encode(text: str) -> bytes:
    """UTF-8, keeping lone surrogates (valid in JSON strings) as three bytes each."""
    return text.encode("utf-8", "surrogatepass")


def profile(text: str, encoded: bytes | None = None) -> dict[str, int]:
    """Counts of `cjk`, `letters`, `digits`, `spaces`, `punct` and `other` code points (§5)."""
    data = encode(text) if encoded is None else encoded
    classes = data.translate(_TABLE, _CONTINUATION)
    cjk = classes.count(b"C")
    spaces = classes.count(b"S")
    if len(data) != len(text):  # some non-ASCII: look closer only at the leads present
        if b"a" in classes:
            spaces += len(_C2_SPACES.findall(data))
        if b"b" in classes:
            spaces += data.count(_OGHAM_SPACE)
        if b"c" in classes:
            spaces += len(_E2_SPACES.findall(data))
        if b"e" in classes:
            cjk += len(_EA_CJK.findall(data))
        if b"f" in classes:
            cjk += len(_ED_CJK.findall(data))
        if b"g" in classes:
            cjk += len(_EF_CJK.findall(data))
    counts = {
        "cjk": cjk,
        "letters": classes.count(b"L"),
        "digits": classes.count(b"D"),
        "spaces": spaces,
        "punct": classes.count(b"P"),
    }
    counts["other"] = len(text) - sum(counts.values())
    return {name: counts[name] for name in CLASSES}


@dataclass(frozen=True, slots=True)
class TextStats:
    chars: int
    bytes: int
    profile: dict[str, int]


def text_stats(pieces: Iterable[str]) -> TextStats:
    """Lengths and profile of the pieces taken together (no separator is added)."""
    text = "".join(pieces)
    data = encode(text)
    return TextStats(chars=len(text), bytes=len(data), profile=profile(text, data))


# --- Which calls are recorded --------------------------------------------------------

CHAT, COMPLETIONS, RESPONSES, EMBEDDINGS = "chat", "completions", "responses", "embeddings"
RECORDED = {
    "/chat/completions": CHAT,
    "/completions": COMPLETIONS,
    "/responses": RESPONSES,
    "/embeddings": EMBEDDINGS,
}


def recorded_kind(method: str, path: str) -> str | None:
    """The kind of a recorded call (a POST to one of the four endpoints), else None.

    `path` is what follows `/v1`, e.g. `/chat/completions`.
    """
    if method != "POST":
        return None
    return RECORDED.get(path.rstrip("/"))


# --- Text of requests ----------------------------------------------------------------


def _add_content(value: Any, pieces: list[str]) -> None:
    """A message `content`: a string, or a list of parts of which the text ones count."""
    if isinstance(value, str):
        pieces.append(value)
    elif isinstance(value, list):
        for part in value:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict):
                for key in ("text", "refusal"):
                    text = part.get(key)
                    if isinstance(text, str):
                        pieces.append(text)


def _add_call(function: Any, pieces: list[str]) -> None:
    if isinstance(function, dict):
        for key in ("name", "arguments"):
            value = function.get(key)
            if isinstance(value, str):
                pieces.append(value)


def _add_tools(tools: Any, pieces: list[str]) -> int:
    """Tool definitions as the model reads them: compact JSON of each function."""
    if not isinstance(tools, list):
        return 0
    for tool in tools:
        definition = tool.get("function", tool) if isinstance(tool, dict) else tool
        pieces.append(json.dumps(definition, ensure_ascii=False, separators=(",", ":")))
    return len(tools)


def context_text(kind: str, body: Any) -> tuple[list[str], int]:
    """(text pieces of the context, message count) of a request body.

    The count is the messages (or prompts, input items, embedding inputs) plus the
    tool definitions, since each adds its own framing tokens.
    """
    pieces: list[str] = []
    if not isinstance(body, dict):
        return pieces, 0
    count = 0
    if kind == CHAT:
        messages = body.get("messages")
        for message in messages if isinstance(messages, list) else []:
            count += 1
            if not isinstance(message, dict):
                continue
            _add_content(message.get("content"), pieces)
            calls = message.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                if isinstance(call, dict):
                    _add_call(call.get("function"), pieces)
            _add_call(message.get("function_call"), pieces)
        count += _add_tools(body.get("tools") or body.get("functions"), pieces)
    elif kind == COMPLETIONS:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            pieces.append(prompt)
            count = 1
        elif isinstance(prompt, list):
            pieces.extend(p for p in prompt if isinstance(p, str))
            count = len(prompt)
    elif kind == RESPONSES:
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            pieces.append(instructions)
            count += 1
        items = body.get("input")
        if isinstance(items, str):
            pieces.append(items)
            count += 1
        elif isinstance(items, list):
            for item in items:
                count += 1
                if isinstance(item, dict):
                    _add_content(item.get("content"), pieces)
                    _add_content(item.get("output"), pieces)
                    if item.get("type") == "function_call":
                        _add_call(item, pieces)
        count += _add_tools(body.get("tools"), pieces)
    elif kind == EMBEDDINGS:
        inputs = body.get("input")
        if isinstance(inputs, str):
            pieces.append(inputs)
            count = 1
        elif isinstance(inputs, list):
            pieces.extend(i for i in inputs if isinstance(i, str))
            count = len(inputs)
    return pieces, count


# --- Text of responses -----------------------------------------------------------------


def _add_message_output(message: Any, pieces: list[str]) -> None:
    """Generated text of a chat message or delta: content, reasoning, refusal, tool-call arguments."""
    if not isinstance(message, dict):
        return
    _add_content(message.get("content"), pieces)
    for key in ("reasoning_content", "refusal"):
        value = message.get(key)
        if isinstance(value, str):
            pieces.append(value)
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            pieces.append(function["arguments"])
    function = message.get("function_call")
    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
        pieces.append(function["arguments"])


def _add_responses_item(item: Any, pieces: list[str]) -> None:
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind == "message":
        _add_content(item.get("content"), pieces)
    elif kind == "function_call" and isinstance(item.get("arguments"), str):
        pieces.append(item["arguments"])
    elif kind == "reasoning":
        _add_content(item.get("summary"), pieces)


@dataclass
class Output:
    """What a response said, as far as the record needs it."""

    pieces: list[str]
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    response_id: str | None = None


def response_output(kind: str, body: Any) -> Output:
    """Output of a non-streamed response body (or the error it carries)."""
    out = Output(pieces=[])
    if not isinstance(body, dict):
        return out
    if isinstance(body.get("error"), dict):
        out.error = body["error"]
    if isinstance(body.get("usage"), dict):
        out.usage = body["usage"]
    if isinstance(body.get("id"), str):
        out.response_id = body["id"]
    if kind in (CHAT, COMPLETIONS):
        choices = body.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            if kind == CHAT:
                _add_message_output(choice.get("message"), out.pieces)
            elif isinstance(choice.get("text"), str):
                out.pieces.append(choice["text"])
    elif kind == RESPONSES:
        items = body.get("output")
        for item in items if isinstance(items, list) else []:
            _add_responses_item(item, out.pieces)
    return out


_RESPONSES_DELTAS = {
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
}
_RESPONSES_FINAL = {"response.completed", "response.incomplete", "response.failed"}


def stream_output(kind: str, events: Sequence[Any]) -> Output:
    """Output of a stream from its parsed `data:` payloads, in order.

    Usage is the last non-null one seen (the usage-only chunk of chat completions, the
    final event of the Responses API); an `error` object in the stream is kept.
    """
    out = Output(pieces=[])
    for data in events:
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("error"), dict):
            out.error = data["error"]
        if kind == RESPONSES:
            event = data.get("type")
            if event in _RESPONSES_DELTAS and isinstance(data.get("delta"), str):
                out.pieces.append(data["delta"])
            elif event in _RESPONSES_FINAL or event == "response.created":
                response = data.get("response")
                if isinstance(response, dict):
                    out.response_id = out.response_id or response.get("id")
                    if isinstance(response.get("usage"), dict):
                        out.usage = response["usage"]
                    if isinstance(response.get("error"), dict):
                        out.error = response["error"]
            continue
        if isinstance(data.get("usage"), dict):
            out.usage = data["usage"]
        if out.response_id is None and isinstance(data.get("id"), str):
            out.response_id = data["id"]
        choices = data.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            if kind == CHAT:
                _add_message_output(choice.get("delta"), out.pieces)
            elif isinstance(choice.get("text"), str):
                out.pieces.append(choice["text"])
    return out
