"""Usage exports read as a stream of ingestion records (docs/import.md).

Three formats, each turned into RecordIn-shaped dicts one row at a time so that
memory stays flat whatever the file size:

- `jsonl`: one §4.3 record per line;
- `csv`: a header row, then one record per row (columns in `CSV_COLUMNS`);
- `newapi`: the per-request log rows of a New API console (`GET /api/log/self`
  items), as JSONL, as a JSON array, or as the whole API response.

Files are read in binary and decoded here, so that invalid UTF-8 is reported
against its line instead of stopping the import. `import_records` hands
batches to `usage.schemas.validate_records` and `usage.services.record_usage`.
docs/import.md describes the formats for people.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Any, BinaryIO

from django.db import DEFAULT_DB_ALIAS, connections, reset_queries

from usage import json_input
from usage.csv_lines import CsvLines, quote_problem
from usage.deadletters import record_or_set_aside
from usage.models import Account, RecordSource
from usage.schemas import validate_records
from usage.services import IngestResult

DEFAULT_BATCH_SIZE = 2000
READ_BUFFER_BYTES = 1 << 20
# While a writer thread stores batches, threads switch every millisecond instead of every
# five: the thread coming back from the database or a read gets the GIL back sooner.
WRITER_SWITCH_INTERVAL = 0.001
BOM = b"\xef\xbb\xbf"


class ImportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    NEWAPI = "newapi"


FORMAT_BY_SUFFIX = {".jsonl": ImportFormat.JSONL, ".ndjson": ImportFormat.JSONL, ".csv": ImportFormat.CSV}


class ImportFileError(Exception):
    """The file as a whole cannot be read (bad header, broken JSON document…); nothing after it is imported."""


class BadField(Exception):
    """One row cannot become a record; `field` names the column or field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(slots=True)
class Row:
    """One line, CSV row or array item: a record to validate, a problem to report, or a skip."""

    position: int
    data: Any = None
    problem: str = ""
    skipped: str = ""  # why the row is not usage, e.g. "top-up (type 1)"
    field: str = ""  # the column or field a problem is about; empty when the whole line is unreadable


class ProblemKind(StrEnum):
    REJECTED = "rejected"  # the row is not a valid record
    CONFLICT = "conflict"  # its request_id is stored with other content
    SET_ASIDE = "set aside"  # valid, but the database refused it: a dead letter to replay


@dataclass(frozen=True, slots=True)
class Problem:
    """One row that was not stored, for people: where, which field, why (as `report` words it)."""

    position: int
    field: str
    reason: str
    kind: ProblemKind = ProblemKind.REJECTED


@dataclass
class Source:
    """An opened export: its rows, how positions are named, and its own names for record fields."""

    rows: Iterator[Row]
    position_label: str
    bytes_read: Callable[[], int]
    field_names: Mapping[str, str] = field(default_factory=dict)

    def where(self, position: int) -> str:
        return f"{self.position_label} {position}"

    def in_own_terms(self, message: str) -> str:
        """A validation message ("usage.prompt_tokens: …; model: …") with the file's field names."""
        if not self.field_names:
            return message
        parts = []
        for part in message.split("; "):
            location, sep, text = part.partition(": ")
            parts.append(f"{self.field_names.get(location, location)}{sep}{text}")
        return "; ".join(parts)


def format_for(path: PurePath) -> ImportFormat | None:
    """The format a file's extension implies (.jsonl/.ndjson, .csv), or None."""
    return FORMAT_BY_SUFFIX.get(path.suffix.lower())


@contextlib.contextmanager
def open_export(path: Path, import_format: ImportFormat) -> Iterator[Source]:
    """The rows of `path` read as `import_format`. OSError when the file cannot be opened;
    ImportFileError when its header or document structure is unusable."""
    # A large buffer: fewer reads, each of which gives the writer thread the GIL (import_records).
    with path.open("rb", buffering=READ_BUFFER_BYTES) as file:
        if import_format is ImportFormat.JSONL:
            yield Source(_json_lines(file), "line", file.tell)  # one §4.3 record per line
        elif import_format is ImportFormat.CSV:
            yield Source(_csv_rows(file), "line", file.tell, CSV_FIELD_NAMES)
        else:
            yield _newapi_source(file)


# ── Lines ─────────────────────────────────────────────────────────────────────


def _numbered_lines(file: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Physical lines with their 1-based number; a UTF-8 byte order mark is dropped."""
    for number, line in enumerate(file, 1):
        yield number, (line.removeprefix(BOM) if number == 1 else line)


def _json_lines(file: BinaryIO) -> Iterator[Row]:
    """Each non-blank line parsed as JSON; undecodable or unparsable lines become problems."""
    loads = json_input.loads
    for number, raw in _numbered_lines(file):
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            yield Row(number, problem=f"not valid UTF-8 (byte {exc.start + 1} of the line)")
            continue
        if not text or text.isspace():
            continue
        try:
            yield Row(number, loads(text))
        except ValueError as exc:
            yield Row(number, problem=f"not valid JSON ({_json_reason(exc)})")


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


# ── CSV ───────────────────────────────────────────────────────────────────────

STRING_COLUMNS = ("request_id", "occurred_at", "model", "api_key", "endpoint", "response_id", "upstream_request_id")
INTEGER_COLUMNS = (
    "status_code",
    "context_chars",
    "context_bytes",
    "output_chars",
    "output_bytes",
    "message_count",
    "latency_ms",
    "ttft_ms",
)
TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
ERROR_COLUMNS = {"error_type": "type", "error_code": "code", "error_message": "message"}
METADATA_COLUMNS = ("team", "user", "feature")
CSV_COLUMNS = (
    *STRING_COLUMNS,
    "stream",
    "status_code",
    *TOKEN_COLUMNS,
    *ERROR_COLUMNS,
    *INTEGER_COLUMNS[1:],
    "cost",
    *METADATA_COLUMNS,
)
REQUIRED_CSV_COLUMNS = ("request_id", "occurred_at", "model")
CSV_FIELD_NAMES = {
    "usage.prompt_tokens": "prompt_tokens",
    "usage.completion_tokens": "completion_tokens",
    "usage.prompt_tokens_details.cached_tokens": "cached_tokens",
    "usage.completion_tokens_details.reasoning_tokens": "reasoning_tokens",
    "usage": "prompt_tokens",
    "error.type": "error_type",
    "error.code": "error_code",
    "error.message": "error_message",
    "metadata": "team/user/feature",
    **{f"metadata.{name}": name for name in METADATA_COLUMNS},
}
INTEGER = re.compile(r"[+-]?[0-9]+")
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _decoded_lines(file: BinaryIO, undecodable: set[int]) -> Iterator[tuple[int, str]]:
    """Numbered text lines for the csv module; numbers of lines that are not UTF-8 go to `undecodable`."""
    for number, raw in _numbered_lines(file):
        try:
            yield number, raw.decode()
        except UnicodeDecodeError:
            undecodable.add(number)
            yield number, raw.decode(errors="replace")


def _csv_header(reader: Any) -> list[str]:
    """The header row, checked: required columns present, every column known, none repeated."""
    try:
        header = next((cells for cells in reader if any(c.strip() for c in cells)), None)
    except csv.Error as exc:
        raise ImportFileError(f"The CSV header is not valid CSV ({exc}).") from exc
    if header is None:
        raise ImportFileError("The CSV file is empty: it needs a header row naming its columns.")
    columns = [cell.strip().lower() for cell in header]
    if missing := [c for c in REQUIRED_CSV_COLUMNS if c not in columns]:
        raise ImportFileError(f"The CSV header lacks required column(s): {', '.join(missing)}.")
    if unknown := [c for c in columns if c not in CSV_COLUMNS]:
        raise ImportFileError(
            f"The CSV header has unknown column(s): {', '.join(repr(c) for c in unknown)}. "
            f"Known columns: {', '.join(CSV_COLUMNS)}."
        )
    if repeated := sorted({c for c in columns if columns.count(c) > 1}):
        raise ImportFileError(f"The CSV header repeats column(s): {', '.join(repeated)}.")
    return columns


def _csv_rows(file: BinaryIO) -> Iterator[Row]:
    undecodable: set[int] = set()
    lines = CsvLines(_decoded_lines(file, undecodable))
    # strict: text after a closing quote is an error, not glued to the cell.
    reader = csv.reader(lines, strict=True)
    columns = _csv_header(reader)  # raised here, before any row is read
    if undecodable:
        raise ImportFileError(f"The CSV header (line {min(undecodable)}) is not valid UTF-8.")
    return _csv_records(reader, lines, columns, undecodable)


def _csv_records(reader: Any, lines: CsvLines, columns: list[str], undecodable: set[int]) -> Iterator[Row]:
    while True:
        lines.start_row()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _broken_row(lines, str(exc))
            continue
        if len(lines.row) > 1 and len(cells) > len(columns):  # a quote that swallowed the next line(s)
            yield _broken_row(lines, "more cells than the header")
            continue
        first_line = lines.first_number
        if undecodable:
            bad = sorted(n for n in undecodable if n in lines.numbers())
            if bad:
                undecodable.difference_update(bad)
                yield Row(first_line, problem=f"not valid UTF-8 (line {bad[0]})")
                continue
        if not any(cells):
            continue
        try:
            yield Row(first_line, csv_record(columns, cells))
        except BadField as exc:
            yield Row(first_line, problem=str(exc), field=exc.field)


def _broken_row(lines: CsvLines, reason: str) -> Row:
    """The row's first line as a problem saying where its quoting goes wrong; the lines after it
    are read again as rows of their own."""
    number, text = lines.reread_after_first()
    return Row(number, problem=quote_problem(text) or f"not valid CSV ({reason})")


def csv_record(columns: list[str], cells: list[str]) -> dict[str, Any]:
    """The §4.3 record of one CSV row. Empty cells are absent; numbers are parsed strictly."""
    if len(cells) > len(columns):
        raise BadField("row", f"has {len(cells)} cells but the header names {len(columns)} columns")
    record: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    error: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for column, raw in zip(columns, cells, strict=False):
        cell = raw.strip()
        if not cell:
            continue
        if column in TOKEN_COLUMNS:
            usage[column] = _integer(column, cell)
        elif column in INTEGER_COLUMNS:
            record[column] = _integer(column, cell)
        elif column in ERROR_COLUMNS:
            error[ERROR_COLUMNS[column]] = cell
        elif column in METADATA_COLUMNS:
            metadata[column] = cell
        elif column == "stream":
            record["stream"] = _boolean(column, cell)
        else:  # the string columns and cost (a decimal string)
            record[column] = cell
    if usage:
        record["usage"] = _usage_body(usage)
    if error:
        record["error"] = error
    if metadata:
        record["metadata"] = metadata
    return record


def _integer(column: str, cell: str) -> int:
    if not INTEGER.fullmatch(cell):
        raise BadField(column, f"{cell[:40]!r} is not an integer")
    return int(cell)


def _boolean(column: str, cell: str) -> bool:
    value = BOOLEANS.get(cell.lower())
    if value is None:
        raise BadField(column, f"{cell[:40]!r} is not one of true, false, 1, 0")
    return value


def _usage_body(tokens: dict[str, int]) -> dict[str, Any]:
    body: dict[str, Any] = {k: tokens[k] for k in ("prompt_tokens", "completion_tokens") if k in tokens}
    if "cached_tokens" in tokens:
        body["prompt_tokens_details"] = {"cached_tokens": tokens["cached_tokens"]}
    if "reasoning_tokens" in tokens:
        body["completion_tokens_details"] = {"reasoning_tokens": tokens["reasoning_tokens"]}
    return body


# ── New API console log rows (§4.6) ───────────────────────────────────────────

CONSUME, ERROR = 2, 5
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
            raise BadField("other", f"is not a valid JSON string ({_json_reason(exc)})") from exc
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
    for row in _json_lines(file):
        yield row if row.problem else _newapi_row(row.position, row.data)


def _newapi_source(file: BinaryIO) -> Source:
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


# ── Importing ─────────────────────────────────────────────────────────────────


@dataclass
class ImportSummary:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    other_source_duplicates: int = 0  # among the duplicates: calls another source had recorded
    conflicts: int = 0
    rejected: int = 0
    set_aside: int = 0  # valid, but refused by the database: dead letters to replay
    skipped: int = 0
    skipped_why: dict[str, int] = field(default_factory=dict)
    fatal: str = ""

    @property
    def valid(self) -> int:
        return self.accepted + self.duplicates + self.conflicts


@dataclass
class _Batch:
    records: list[Any] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    problems: list[tuple[int, str, str]] = field(default_factory=list)  # position, field, message

    def __len__(self) -> int:
        return len(self.records) + len(self.problems)


WHOLE_LINE = ""  # the field of a problem about the whole line (not JSON, not UTF-8, broken quoting)


def _no_progress(summary: ImportSummary) -> None:
    pass


def import_records(
    account: Account,
    source: Source,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    report: Callable[[str], None],
    progress: Callable[[ImportSummary], None] = _no_progress,
    on_problem: Callable[[Problem], None] | None = None,
) -> ImportSummary:
    """Validates and stores every record of `source`, `batch_size` at a time.

    Each rejected row and each conflict is passed to `report` with its position (and,
    as a `Problem` naming its field, to `on_problem`); a file-level error stops reading
    but keeps what was stored and is returned as `fatal`. `progress` gets the summary so
    far every `batch_size` rows read and once at the end (usage.import_runs throttles it).

    On PostgreSQL, outside a caller's transaction, each batch is stored by a writer
    thread with its own connection while this thread reads and validates the next
    one: the database works on one core while Python works on the other. Batches are
    still stored one at a time and in order, and reported in order.
    """
    summary = ImportSummary()
    batch = _Batch()
    tell = _Tell(report, on_problem)
    with _writer() as store:
        try:
            for row in source.rows:
                summary.read += 1
                if row.problem:
                    batch.problems.append((row.position, row.field, row.problem))
                elif row.skipped:
                    summary.skipped += 1
                    summary.skipped_why[row.skipped] = summary.skipped_why.get(row.skipped, 0) + 1
                else:
                    batch.records.append(row.data)
                    batch.positions.append(row.position)
                # Problems count too: a file of bad lines is reported as it is read, in flat memory.
                if len(batch) >= batch_size:
                    store(_Stored.of(account, source, batch), summary, tell)
                    batch = _Batch()
                    reset_queries()  # with DEBUG on, Django keeps every statement: keep memory flat
                if summary.read % batch_size == 0:
                    progress(summary)
        except ImportFileError as exc:
            summary.fatal = str(exc)
        store(_Stored.of(account, source, batch), summary, tell)
    progress(summary)
    return summary


@dataclass(frozen=True, slots=True)
class _Tell:
    """Where a stored batch's problems go: `report` as text, `on_problem` as `Problem`s."""

    report: Callable[[str], None]
    on_problem: Callable[[Problem], None] | None

    def __call__(self, source: Source, problem: Problem) -> None:
        self.report(f"{source.where(problem.position)}: {problem.reason}")
        if self.on_problem is not None:
            self.on_problem(problem)


Store = Callable[["_Stored", ImportSummary, _Tell], None]


@contextlib.contextmanager
def _writer() -> Iterator[Store]:
    """A function that stores a validated batch and reports it: at once, or (PostgreSQL,
    no enclosing transaction) on a writer thread, reporting each batch when the next is handed over."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        # Inside a transaction the records must be written in it, on this connection.
        yield lambda stored, summary, report: stored.run().tell(summary, report)
        return

    pending: list[tuple[Future[_Stored], ImportSummary, _Tell]] = []

    def finish_pending() -> None:
        while pending:
            future, summary, report = pending.pop()
            future.result().tell(summary, report)

    def store(stored: _Stored, summary: ImportSummary, report: _Tell) -> None:
        finish_pending()  # one batch in flight: memory stays flat, reports stay in order
        pending.append((pool.submit(stored.run), summary, report))

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(WRITER_SWITCH_INTERVAL)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-writer") as pool:
        try:
            yield store
            finish_pending()
        finally:
            sys.setswitchinterval(switch_interval)
            for future, _summary, _report in pending:
                future.cancel()
            pool.submit(connections.close_all).result()  # the writer thread's connection


@dataclass
class _Stored:
    """One batch: validated, then stored (possibly on the writer thread), then reported."""

    account: Account
    source: Source
    problems: list[tuple[int, str, str]]  # position, field, message
    valid: list[tuple[int, Any]]
    result: IngestResult | None = None

    @classmethod
    def of(cls, account: Account, source: Source, batch: _Batch) -> _Stored:
        valid, rejected = validate_records(batch.records) if batch.records else ([], [])
        own = source.field_names
        problems = batch.problems + [
            (batch.positions[r["index"]], own.get(r["field"], r["field"]), source.in_own_terms(r["message"]))
            for r in rejected
        ]
        positions = batch.positions
        return cls(account, source, problems, [(positions[i], record) for i, record in valid])

    def run(self) -> _Stored:
        self.result = record_or_set_aside(self.account, self.valid, source=RecordSource.IMPORT)
        return self

    def tell(self, summary: ImportSummary, tell: _Tell) -> None:
        assert self.result is not None
        for position, field_name, problem in sorted(self.problems, key=lambda p: p[0]):
            tell(self.source, Problem(position, field_name, problem))
        summary.rejected += len(self.problems)
        for conflict in self.result.conflicts:
            reason = (
                f"request_id {conflict['request_id']!r} is already stored with other content; "
                "the stored record is kept (conflict)"
            )
            tell(self.source, Problem(conflict["index"], "request_id", reason, ProblemKind.CONFLICT))
        for kept in self.result.set_aside:
            reason = (
                f"could not be stored ({kept['reason']}); "
                "kept aside for an administrator to replay (manage.py replay_dead_letters)"
            )
            tell(self.source, Problem(kept["index"], WHOLE_LINE, reason, ProblemKind.SET_ASIDE))
        summary.accepted += self.result.accepted
        summary.duplicates += self.result.duplicates
        summary.other_source_duplicates += self.result.other_source_duplicates
        summary.conflicts += len(self.result.conflicts)
        summary.set_aside += len(self.result.set_aside)
