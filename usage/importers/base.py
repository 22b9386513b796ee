"""What every import format shares: the formats, a row read from a file, the problems found in
it, and a source of rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# A batch's rollup upserts grow with the hours, days and latency buckets it spans, not with
# its records: 8,000 records make 0.45 upserts per record where 2,000 made 1.14, and took
# 0.80x the time at 10M records, for about 45 MB more memory, flat in the file's size
# (bench/README.md, "Larger import batches and array lookups").
DEFAULT_BATCH_SIZE = 8000
READ_BUFFER_BYTES = 1 << 20
# While a writer thread stores batches, threads switch every millisecond instead of every
# five: the thread coming back from the database or a read gets the GIL back sooner.
WRITER_SWITCH_INTERVAL = 0.001
# Batches stored at once, each by its own thread and connection: while one waits on the
# database, another builds its rows (they take their locks in one order: no deadlock).
WRITERS = 2
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
