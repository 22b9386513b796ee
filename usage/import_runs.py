"""One import of one file, with its progress: the home shared by `manage.py import_usage`
and the Import page's Celery task.

`run_import` opens the export, stores its records (`usage.importers.import_records`) and
hands a `Snapshot` (rows read, stored, duplicates, rejected, bytes read, rate, time left)
to a sink at most every `interval` seconds and once at the end. The command's sinks draw
a tqdm bar on a terminal or print plain lines; the task's sink writes the job's row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from usage.import_jobs.models import format_duration
from usage.importers import (
    DEFAULT_BATCH_SIZE,
    ImportFileError,
    ImportFormat,
    ImportSummary,
    Problem,
    Source,
    import_records,
    open_export,
)
from usage.models import Account

PROGRESS_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """How far an import has got."""

    rows_read: int
    stored: int
    duplicates: int
    rejected: int  # rows that are not valid records, plus conflicts and rows set aside
    skipped: int
    bytes_read: int
    bytes_total: int
    elapsed: float  # seconds since the import started
    done: bool = False

    @property
    def fraction(self) -> float:
        """Share of the file read, 0..1 (1 once done, whatever the file's size)."""
        if self.done:
            return 1.0
        if self.bytes_total <= 0:
            return 0.0
        return min(self.bytes_read / self.bytes_total, 1.0)

    @property
    def rate(self) -> float:
        """Rows read per second."""
        return self.rows_read / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """At the pace so far, from the bytes still to read; None before there is a pace."""
        if self.done:
            return 0.0
        if self.bytes_read <= 0 or self.elapsed <= 0:
            return None
        return max(self.bytes_total - self.bytes_read, 0) / (self.bytes_read / self.elapsed)

    def line(self) -> str:
        """The snapshot as one plain line, for logs and terminals without a bar."""
        left = self.seconds_left
        return (
            f"{self.fraction:.0%} · {self.rows_read:,} rows read · {self.stored:,} stored · "
            f"{self.duplicates:,} duplicates · {self.rejected:,} rejected · {self.rate:,.0f} rows/s"
            + (f" · {format_duration(left)} left" if left is not None and not self.done else "")
        )


Sink = Callable[[Snapshot], None]


class ImportProgress:
    """Called by `import_records` every batch of rows; passes a snapshot to `sink` when
    `interval` seconds have passed since the last one, and always from `finish`."""

    def __init__(
        self,
        sink: Sink,
        *,
        bytes_total: int,
        interval: float = PROGRESS_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.bytes_total = bytes_total
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.last_sent = self.started
        self.bytes_read: Callable[[], int] = lambda: 0

    def snapshot(self, summary: ImportSummary, *, done: bool = False) -> Snapshot:
        return Snapshot(
            rows_read=summary.read,
            stored=summary.accepted,
            duplicates=summary.duplicates,
            rejected=summary.rejected + summary.conflicts + summary.set_aside,
            skipped=summary.skipped,
            bytes_read=self.bytes_total if done else min(self.bytes_read(), self.bytes_total),
            bytes_total=self.bytes_total,
            elapsed=self.clock() - self.started,
            done=done,
        )

    def __call__(self, summary: ImportSummary) -> None:
        now = self.clock()
        if now - self.last_sent >= self.interval:
            self.last_sent = now
            self.sink(self.snapshot(summary))

    def finish(self, summary: ImportSummary) -> Snapshot:
        final = self.snapshot(summary, done=True)
        self.sink(final)
        return final


@dataclass(frozen=True)
class ImportRun:
    summary: ImportSummary
    final: Snapshot
    position_label: str  # "line", or "index" for the items of one JSON document


def run_import(
    account: Account,
    path: Path,
    import_format: ImportFormat,
    *,
    progress: ImportProgress,
    report: Callable[[str], None] = lambda message: None,
    on_problem: Callable[[Problem], None] | None = None,
    on_open: Callable[[Source], None] = lambda source: None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportRun:
    """Imports `path` into `account`. OSError when the file cannot be opened and
    ImportFileError when its header is unusable (nothing stored then); a document broken
    further on keeps what came before it and is the summary's `fatal`."""
    with open_export(path, import_format) as source:
        progress.bytes_read = source.bytes_read
        on_open(source)
        summary = import_records(
            account, source, batch_size=batch_size, report=report, progress=progress, on_problem=on_problem
        )
    return ImportRun(summary, progress.finish(summary), source.position_label)


__all__ = ["ImportFileError", "ImportProgress", "ImportRun", "Snapshot", "run_import"]
