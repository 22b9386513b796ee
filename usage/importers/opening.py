"""A file opened as the source of rows of its format."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path, PurePath

from usage.importers.base import FORMAT_BY_SUFFIX, READ_BUFFER_BYTES, ImportFormat, Source
from usage.importers.csv_format import CSV_FIELD_NAMES, csv_rows
from usage.importers.jsonl import record_lines
from usage.importers.newapi import newapi_source


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
            yield Source(record_lines(file), "line", file.tell)  # one §4.3 record per line
        elif import_format is ImportFormat.CSV:
            yield Source(csv_rows(file), "line", file.tell, CSV_FIELD_NAMES)
        else:
            yield newapi_source(file)
