"""New API console log rows (GET /api/log/self items) as JSON lines, a JSON array or the whole
API response, read by a streaming JSON document parser so memory stays flat."""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, BinaryIO

from usage import json_input
from usage.importers.base import BOM, BadField, ImportFileError, Row, Source
from usage.importers.jsonl import json_lines, json_reason

CONSUME, ERROR = 2, 5  # New API log types
USAGE_LOG_TYPES = frozenset({CONSUME, ERROR})
LOG_TYPE_NAMES = {1: "top-up", 2: "consume", 3: "manage", 4: "system", 5: "error", 6: "refund"}
DEDUPE_FIELDS = ("created_at", "token_name", "model_name", "quota", "prompt_tokens", "completion_tokens", "use_time")
MAX_ERROR_MESSAGE = 10_000
UNKNOWN_ERROR_STATUS = 500
NEWAPI_FIELD_NAMES = {
    "occurred_at": "created_at",
    "model": "model_name",
    "api_key": "token_name",
    "stream": "is_stream",
    "latency_ms": "use_time",
    "ttft_ms": "other.frt",
    "usage.prompt_tokens": "prompt_tokens",
    "usage.completion_tokens": "completion_tokens",
    "usage.prompt_tokens_details.cached_tokens": "other.cache_tokens",
    "usage": "prompt_tokens",
    "status_code": "other.status_code",
    "endpoint": "other.request_path",
    "error.type": "other.error_type",
    "error.code": "other.error_code",
    "error.message": "content",
}


def newapi_request_id(row: Mapping[str, Any]) -> str:
    """The row's own request_id, else one derived from the fields that identify a log row.

    The console's `id` is not stable across exports, so (created_at, token_name,
    model_name, quota, prompt_tokens, completion_tokens, use_time) is hashed:
    overlapping exports give the same ids and are counted as duplicates.
    """
    own = row.get("request_id")
    if isinstance(own, str) and own.strip():
        return own.strip()
    identity = [row.get(name) if row.get(name) is not None else _zero_of(name) for name in DEDUPE_FIELDS]
    # default=str: a fractional number (a Decimal, read from a file) cannot be a valid row anyway.
    text = json.dumps(identity, ensure_ascii=False, separators=(",", ":"), default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"newapi-{digest[:24]}"


def _zero_of(name: str) -> Any:
    """Go's zero value for an absent field, so absent and zero hash alike."""
    return "" if name in ("token_name", "model_name") else 0


def newapi_record(row: Any) -> dict[str, Any] | None:
    """The §4.3 record of one console log row; None for rows that are not usage (top-ups…).

    Cost is left out on purpose: `quota` is in quota units whose money value depends
    on the console's settings, so the price book computes cost; quota is kept in
    metadata as `newapi_quota`.
    """
    if not isinstance(row, dict):
        raise BadField("item", "must be a JSON object")
    log_type = _int_field(row, "type", required=True)
    if log_type not in USAGE_LOG_TYPES:
        return None
    created_at = _int_field(row, "created_at", required=True)
    quota = _int_field(row, "quota")
    use_time = _int_field(row, "use_time")
    other = _other_of(row)
    token_name = row.get("token_name") or None
    if isinstance(token_name, str):
        token_name = f"name:{token_name}"  # the console logs a token's name, never its secret

    own_id = row.get("request_id")
    record: dict[str, Any] = {
        "request_id": newapi_request_id(row),
        "occurred_at": _unix_time(created_at),
        "model": row.get("model_name", ""),
        "api_key": token_name,
        "stream": row.get("is_stream", False),
        "latency_ms": use_time * 1000,
        "metadata": {"newapi_quota": str(quota)},
    }
    if isinstance(own_id, str) and own_id.strip():
        # The console's id of the call (the X-Oneapi-Request-Id its API answered with): the
        # proxy's record of the same call carries it too, so the call is counted once.
        record["upstream_request_id"] = own_id.strip()[:200]
    usage = _newapi_usage(row, other)
    if log_type == CONSUME or usage["prompt_tokens"] or usage["completion_tokens"]:
        record["usage"] = usage  # a failed call that reported no tokens has no usage, as through the proxy
    if (ttft := _first_response_ms(other)) is not None:
        record["ttft_ms"] = ttft
    path = other.get("request_path")
    if isinstance(path, str) and path.startswith("/") and len(path) <= 200:
        record["endpoint"] = path
    if log_type == ERROR:
        record["status_code"] = _error_status(other)
        record["error"] = _error_body(row, other)
    return record


def _newapi_usage(row: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": row.get("prompt_tokens", 0),
        "completion_tokens": row.get("completion_tokens", 0),
    }
    if other.get("cache_tokens") is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": other["cache_tokens"]}
    return usage


def _int_field(row: Mapping[str, Any], name: str, *, required: bool = False) -> int:
    value = row.get(name)
    if value is None:
        if required:
            raise BadField(name, "is required")
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadField(name, f"must be an integer, not {value!r:.40}")
    return value


def _unix_time(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise BadField("created_at", f"{seconds} is not a valid unix time") from exc


def _other_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """`other`: a JSON object encoded as a string (already decoded objects are accepted too)."""
    other = row.get("other")
    if other is None or other == "":
        return {}
    if isinstance(other, str):
        try:
            other = json_input.loads(other)
        except ValueError as exc:
            raise BadField("other", f"is not a valid JSON string ({json_reason(exc)})") from exc
    if not isinstance(other, dict):
        raise BadField("other", "must hold a JSON object")
    return other


def _first_response_ms(other: Mapping[str, Any]) -> int | None:
    """`other.frt`: milliseconds to the first response; negative means not measured."""
    frt = other.get("frt")
    if frt is None:
        return None
    if isinstance(frt, bool) or not isinstance(frt, int | float | Decimal):
        raise BadField("other.frt", f"must be a number of milliseconds, not {frt!r:.40}")
    return round(frt) if frt >= 0 else None


def _error_status(other: Mapping[str, Any]) -> int:
    status = other.get("status_code")
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
        return status
    return UNKNOWN_ERROR_STATUS


def _error_body(row: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if isinstance(error_type := other.get("error_type"), str) and error_type:
        body["type"] = error_type[:200]
    if isinstance(code := other.get("error_code"), str | int) and not isinstance(code, bool) and code != "":
        body["code"] = code
    if isinstance(content := row.get("content"), str) and content:
        body["message"] = content[:MAX_ERROR_MESSAGE]
    return body


def _newapi_row(position: int, item: Any) -> Row:
    try:
        record = newapi_record(item)
    except BadField as exc:
        return Row(position, problem=str(exc), field=exc.field)
    if record is None:
        log_type = item["type"]
        return Row(position, skipped=f"{LOG_TYPE_NAMES.get(log_type, 'unknown')} (type {log_type})")
    return Row(position, record)


def _newapi_lines(file: BinaryIO) -> Iterator[Row]:
    for row in json_lines(file):
        yield row if row.problem else _newapi_row(row.position, row.data)


def newapi_source(file: BinaryIO) -> Source:
    """Log rows as JSONL (one row a line), or one JSON document: an array of rows or the
    API response `{"success": …, "data": {"items": [...]}}` (or `"data": [...]`)."""
    if _looks_like_json_lines(file):
        return Source(_newapi_lines(file), "line", file.tell, NEWAPI_FIELD_NAMES)
    items = JsonDocument(file).log_items()
    return Source((_newapi_row(i, item) for i, item in enumerate(items)), "index", file.tell, NEWAPI_FIELD_NAMES)


PEEK_BYTES = 64 * 1024


def _looks_like_json_lines(file: BinaryIO) -> bool:
    """True when the first line is one complete object that is not an API response wrapper."""
    start = file.tell()
    head = file.read(PEEK_BYTES)
    file.seek(start)
    first_line, newline, _ = head.removeprefix(BOM).partition(b"\n")
    first_line = first_line.strip()
    if not head.strip():
        return True  # empty: no rows either way
    if not (newline or len(head) < PEEK_BYTES) or not first_line.startswith(b"{") or not first_line.endswith(b"}"):
        return False
    try:
        value = json_input.loads(first_line)
    except ValueError:
        return True  # a broken first line of a JSONL file; it is reported like any other
    return isinstance(value, dict) and "data" not in value


class JsonDocument:
    """One JSON document read in chunks; only the array items it yields are held in memory.

    The array is found at the top level, or under `data` / `data.items` of an object;
    keys before it are read and dropped. Anything after the array is not read.
    """

    CHUNK_BYTES = 1 << 20
    MAX_ITEM_CHARS = 16 << 20
    WHITESPACE = re.compile(r"[ \t\r\n]*")

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self._text = ""
        self._pos = 0
        self._bytes_before_chunk = 0
        self._consumed_chars = 0
        self._eof = False

    def log_items(self) -> Iterator[Any]:
        first = self._peek()
        if first == "[":
            yield from self._array()
        elif first == "{":
            if not self._enter_key("data"):
                raise ImportFileError("The JSON document has no `data` with the log items (is it an error response?).")
            if self._peek() == "{" and not self._enter_key("items"):
                raise ImportFileError("The JSON document has no `data.items` array.")
            yield from self._array()
        else:
            raise ImportFileError("The file is neither JSON lines, a JSON array, nor a console API response.")

    def _array(self) -> Iterator[Any]:
        self._expect("[")
        if self._peek() == "]":
            return
        while True:
            yield self._value()
            separator = self._peek()
            self._pos += 1
            if separator == "]":
                return
            if separator != ",":
                raise ImportFileError(f"Expected ',' or ']' between array items at character {self._offset()}.")

    def _enter_key(self, key: str) -> bool:
        """Reads an object up to the value of `key`; False when the object ends without it."""
        self._expect("{")
        if self._peek() == "}":
            return False
        while True:
            name = self._value()
            self._expect(":")
            if name == key:
                return True
            self._value()
            separator = self._peek()
            self._pos += 1
            if separator == "}":
                return False
            if separator != ",":
                raise ImportFileError(f"Expected ',' or '}}' in an object at character {self._offset()}.")

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise ImportFileError(f"Expected {char!r} at character {self._offset()} of the JSON document.")
        self._pos += 1

    def _peek(self) -> str:
        """The next character that is not whitespace ('' at the end), without consuming it."""
        while True:
            self._pos = self.WHITESPACE.match(self._text, self._pos).end()  # type: ignore[union-attr]  # the pattern matches the empty string, so never None
            if self._pos < len(self._text):
                return self._text[self._pos]
            if not self._fill():
                return ""

    def _value(self) -> Any:
        """The JSON value at the cursor, reading more of the file until it is complete."""
        self._peek()
        while True:
            try:
                value, end = json_input.raw_decode(self._text, self._pos)
            except json.JSONDecodeError as exc:
                if len(self._text) - self._pos > self.MAX_ITEM_CHARS or not self._fill():
                    raise ImportFileError(
                        f"The JSON document is broken at character {self._offset()}: {exc.msg}."
                    ) from exc
                continue
            except ValueError as exc:
                raise ImportFileError(
                    f"The JSON document cannot be read at character {self._offset()}: {exc}."
                ) from exc
            if end >= len(self._text) - 2 and self._fill():
                continue  # a number cut at the chunk's end ("12", "1.", "1e-") would be read short
            self._pos = end
            return value

    def _fill(self) -> bool:
        """Appends the next chunk, dropping what was consumed; False (and no change) at the end of the file."""
        if self._eof:
            return False
        chunk = self._file.read(self.CHUNK_BYTES)
        self._eof = not chunk
        try:
            text = self._utf8.decode(chunk, final=self._eof)
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"The file is not valid UTF-8 at byte {self._bytes_before_chunk + exc.start + 1}."
            ) from exc
        if not chunk:
            return False  # the buffer stays as it is: callers may hold offsets into it
        self._bytes_before_chunk += len(chunk)
        self._consumed_chars += self._pos
        self._text = self._text[self._pos :] + text
        self._pos = 0
        return True

    def _offset(self) -> int:
        return self._consumed_chars + self._pos + 1
