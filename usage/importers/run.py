"""Running an import: rows in batches to validation and `record_usage`, with progress, the
problems found, and the database writes overlapped with reading."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, reset_queries

from usage.deadletters import record_or_set_aside
from usage.importers.base import (
    DEFAULT_BATCH_SIZE,
    WRITER_SWITCH_INTERVAL,
    WRITERS,
    ImportFileError,
    Problem,
    ProblemKind,
    Source,
)
from usage.ingestion import content_hash
from usage.models import Account, RecordSource
from usage.services import IngestResult
from usage.wire import validate_records


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

    On PostgreSQL, outside a caller's transaction, batches are stored by writer threads
    (WRITERS, each with its own connection and transaction) while this thread reads,
    validates and hashes the next one: the database works while Python does. Batches
    are reported in order.
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
    no enclosing transaction) on WRITERS writer threads, each batch reported in order once
    the batches in flight are full."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        # Inside a transaction the records must be written in it, on this connection.
        yield lambda stored, summary, report: stored.run().tell(summary, report)
        return

    pending: deque[tuple[Future[_Stored], ImportSummary, _Tell]] = deque()

    def finish_oldest() -> None:
        future, summary, report = pending.popleft()
        future.result().tell(summary, report)

    def store(stored: _Stored, summary: ImportSummary, report: _Tell) -> None:
        if len(pending) >= WRITERS:  # a bounded number in flight: memory stays flat, reports in order
            finish_oldest()
        pending.append((pool.submit(stored.run), summary, report))

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(WRITER_SWITCH_INTERVAL)
    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="import-writer") as pool:
        try:
            yield store
            while pending:
                finish_oldest()
        finally:
            sys.setswitchinterval(switch_interval)
            for future, _summary, _report in pending:
                future.cancel()
            # Each writer thread closes its own connection (the barrier gives every thread one).
            barrier = threading.Barrier(WRITERS)

            def close_own_connection() -> None:
                barrier.wait()
                connections.close_all()

            for closing in [pool.submit(close_own_connection) for _ in range(WRITERS)]:
                closing.result()


@dataclass
class _Stored:
    """One batch: validated, then stored (possibly on the writer thread), then reported."""

    account: Account
    source: Source
    problems: list[tuple[int, str, str]]  # position, field, message
    valid: list[tuple[int, Any]]
    digests: list[str]  # the valid records' content hashes: computed here, while the writer waits on the database
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
        digests = [content_hash(record) for _, record in valid]
        return cls(account, source, problems, [(positions[i], record) for i, record in valid], digests)

    def run(self) -> _Stored:
        self.result = record_or_set_aside(self.account, self.valid, source=RecordSource.IMPORT, digests=self.digests)
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
