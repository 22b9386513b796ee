"""Progress and problems of one import (usage.import_runs): what the command prints and the
Import page shows come from the same snapshots."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from django.core.management import call_command

from usage.import_jobs.models import format_duration
from usage.import_runs import ImportProgress, Snapshot, run_import
from usage.importers import ImportFormat, ImportSummary, Problem
from usage.models import Account, UsageRecord


def record(request_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "occurred_at": "2026-11-20T10:15:00Z",
        "model": "gpt-4o-mini",
        "api_key": "backend",
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300},
    } | overrides


def jsonl(*records: Any) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_the_command_prints_plain_progress_lines(account: Account, tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_bytes(jsonl(*(record(f"r{i}") for i in range(30))))
    out = io.StringIO()

    call_command(
        "import_usage", str(path), "--batch-size", "10", "--progress-seconds", "0", stdout=out, stderr=io.StringIO()
    )

    lines = [line for line in out.getvalue().splitlines() if line.startswith("usage.jsonl: ")]
    assert len(lines) >= 2, out.getvalue()
    assert "10 rows read" in lines[0] and "rows/s" in lines[0]
    assert "30 rows read" in lines[-1]
    assert UsageRecord.objects.count() == 30


def test_problems_name_their_line_and_the_field_in_the_files_own_terms(account: Account, tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(
        "request_id,occurred_at,model,prompt_tokens,completion_tokens\n"
        "a,2026-11-20T10:00:00Z,gpt-4o,10,5\n"
        "b,2026-11-20T10:00:00Z,gpt-4o,ten,5\n"
        'c,2026-11-20T10:00:00Z,"gpt-4o,10,5\n'
        "d,2026-11-20T10:00:00Z,,10,5\n"
        "e,2026-11-20T10:00:00Z,gpt-4o,-3,5\n",
        encoding="utf-8",
    )
    problems: list[Problem] = []

    run = run_import(
        account,
        path,
        ImportFormat.CSV,
        progress=ImportProgress(lambda s: None, bytes_total=1),
        on_problem=problems.append,
    )

    assert [(p.position, p.field) for p in problems] == [
        (3, "prompt_tokens"),
        (4, ""),
        (5, "model"),
        (6, "prompt_tokens"),
    ]
    assert "'ten' is not an integer" in problems[0].reason
    assert "quote" in problems[1].reason
    assert (run.summary.accepted, run.summary.rejected, run.position_label) == (1, 4, "line")


def test_a_file_of_bad_lines_is_reported_while_it_is_read_not_at_the_end(account: Account, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"not json\n" * 50)
    seen: list[Snapshot] = []
    reported_before_end: list[int] = []

    def on_problem(problem: Problem) -> None:
        reported_before_end.append(problem.position)

    def sink(snapshot: Snapshot) -> None:
        seen.append(snapshot)

    run_import(
        account,
        path,
        ImportFormat.JSONL,
        progress=ImportProgress(sink, bytes_total=path.stat().st_size, interval=0),
        on_problem=on_problem,
        batch_size=10,
    )

    middle = [s for s in seen if not s.done]
    assert [s.rows_read for s in middle][:5] == [10, 20, 30, 40, 50]
    # Each batch of bad lines is told once read (on PostgreSQL one batch later, after the
    # writer thread): no list of every problem is kept to the end.
    assert all(s.rejected >= s.rows_read - 20 for s in middle), [s.rejected for s in middle]
    assert seen[-1].done and seen[-1].rejected == 50 and seen[-1].fraction == 1.0
    assert reported_before_end == list(range(1, 51))


def test_progress_waits_its_interval_and_always_sends_the_end() -> None:
    sent: list[Snapshot] = []
    clock = Clock()
    progress = ImportProgress(sent.append, bytes_total=1000, interval=3, clock=clock)
    summary = ImportSummary(read=10)

    for second in range(1, 8):
        clock.now = second
        progress(summary)
    progress.finish(summary)

    assert [s.elapsed for s in sent] == [3, 6, 7]  # every 3 seconds, then the end
    assert [s.done for s in sent] == [False, False, True]


def test_a_snapshot_computes_share_rate_and_time_left_from_what_was_read() -> None:
    snapshot = Snapshot(
        rows_read=4000, stored=3000, duplicates=900, rejected=100, skipped=0,
        bytes_read=250, bytes_total=1000, elapsed=2.0,
    )  # fmt: skip

    assert snapshot.fraction == 0.25
    assert snapshot.rate == 2000
    assert snapshot.seconds_left == 6.0  # 750 bytes at 125 bytes/s
    assert "25% · 4,000 rows read · 3,000 stored · 900 duplicates · 100 rejected" in snapshot.line()
    assert (
        format_duration(6) == "6 s" and format_duration(245) == "4 min 05 s" and format_duration(3720) == "1 h 02 min"
    )


class Terminal(io.StringIO):
    """Output that says it is a terminal, as a console's stderr does."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_command_draws_a_bar_with_the_counts(
    account: Account, tmp_path: Path, monkeypatch: Any
) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_bytes(jsonl(*(record(f"r{i}") for i in range(30))) + b"not json\n")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    out = io.StringIO()

    call_command(
        "import_usage", str(path), "--batch-size", "10", "--progress-seconds", "0", stdout=out, stderr=terminal
    )

    screen = terminal.getvalue()
    drawn = re.findall(r"usage\.jsonl: .*?(\d+) rows, (\d+) stored, (\d+) duplicates, (\d+) rejected", screen)
    assert ("10", "10", "0", "0") in drawn or ("20", "20", "0", "0") in drawn or ("20", "10", "0", "0") in drawn, screen
    assert "line 31: not valid JSON" in screen  # problems are written above the bar
    assert not [line for line in out.getvalue().splitlines() if line.startswith("usage.jsonl: ")]  # no plain lines
