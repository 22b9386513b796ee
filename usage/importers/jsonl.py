"""JSON lines: one ingestion record per line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

from django.utils import timezone

from usage import json_input, wire
from usage.importers.base import BOM, Row


def numbered_lines(file: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Physical lines with their 1-based number; a UTF-8 byte order mark is dropped."""
    for number, line in enumerate(file, 1):
        yield number, (line.removeprefix(BOM) if number == 1 else line)


def json_lines(file: BinaryIO) -> Iterator[Row]:
    """Each non-blank line parsed as JSON; undecodable or unparsable lines become problems."""
    for number, raw in numbered_lines(file):
        yield from _parsed(number, raw)


def record_lines(file: BinaryIO) -> Iterator[Row]:
    """`json_lines` of ingestion records: a plainly valid line is decoded straight into its
    record in compiled code (usage.wire); any other is parsed for RecordIn to judge."""
    now = timezone.now()
    for number, raw in numbered_lines(file):
        record = wire.decode_line(raw, now)
        if record is not None:
            yield Row(number, record)
        else:
            yield from _parsed(number, raw)


def _parsed(number: int, raw: bytes) -> Iterator[Row]:
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        yield Row(number, problem=f"not valid UTF-8 (byte {exc.start + 1} of the line)")
        return
    if not text or text.isspace():
        return
    try:
        yield Row(number, json_input.loads(text))
    except ValueError as exc:
        yield Row(number, problem=f"not valid JSON ({json_reason(exc)})")


def json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)
