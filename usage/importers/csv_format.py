"""CSV: a header row, then one record per row (columns in `CSV_COLUMNS`)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from usage.csv_lines import CsvLines, quote_problem
from usage.importers.base import BadField, ImportFileError, Row
from usage.importers.jsonl import numbered_lines

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
    for number, raw in numbered_lines(file):
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


def csv_rows(file: BinaryIO) -> Iterator[Row]:
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
