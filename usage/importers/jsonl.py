"""JSON lines: one ingestion record per line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

from usage import json_input
from usage.importers.base import BOM, Row


def numbered_lines(file: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Physical lines with their 1-based number; a UTF-8 byte order mark is dropped."""
    for number, line in enumerate(file, 1):
        yield number, (line.removeprefix(BOM) if number == 1 else line)


def json_lines(file: BinaryIO) -> Iterator[Row]:
    """Each non-blank line parsed as JSON; undecodable or unparsable lines become problems."""
    loads = json_input.loads
    for number, raw in numbered_lines(file):
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
            yield Row(number, problem=f"not valid JSON ({json_reason(exc)})")


def json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)
