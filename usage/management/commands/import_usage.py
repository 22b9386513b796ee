"""manage.py import_usage PATH [--format jsonl|csv|newapi] [--account SLUG] (docs/import.md).

Progress comes from usage.import_runs, as on the Import page: a tqdm bar on a terminal,
plain lines every --progress-seconds otherwise.
"""

from __future__ import annotations

import sys
import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from toki_dashboard.collector import tune_for_import
from usage.import_runs import ImportProgress, Snapshot, run_import
from usage.importers import DEFAULT_BATCH_SIZE, ImportFileError, ImportFormat, ImportSummary, format_for
from usage.models import Account

PLAIN_PROGRESS_SECONDS = 10.0
BAR_PROGRESS_SECONDS = 0.2


class Command(BaseCommand):
    help = (
        "Import per-request usage from a file: JSON lines of ingestion records, CSV, or New API console "
        "log rows. Bad lines are reported and skipped; running it twice stores nothing twice."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("path", type=Path, help="the file to import")
        parser.add_argument(
            "--format",
            choices=[f.value for f in ImportFormat],
            help="default: from the extension (.jsonl/.ndjson → jsonl, .csv → csv)",
        )
        parser.add_argument("--account", help="account slug (default: the only account)")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"records validated and stored together (default {DEFAULT_BATCH_SIZE})",
        )
        parser.add_argument(
            "--progress-seconds",
            type=float,
            help="how often progress is shown: a plain line off a terminal "
            f"(default {PLAIN_PROGRESS_SECONDS:g}), the bar on one (default {BAR_PROGRESS_SECONDS:g})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        import_format = self._format(path, options["format"])
        account = self._account(options["account"])
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")

        tune_for_import()  # what the command loaded to start lives until it exits
        started = time.perf_counter()
        try:
            summary = self._run(account, path, import_format, options["batch_size"], options["progress_seconds"])
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
        except ImportFileError as exc:
            raise CommandError(f"{path}: {exc}") from exc
        self._print_summary(summary, time.perf_counter() - started, account)
        if summary.fatal:
            raise CommandError(f"{path}: {summary.fatal} Records before that point are stored.")

    def _format(self, path: Path, chosen: str | None) -> ImportFormat:
        if chosen:
            return ImportFormat(chosen)
        detected = format_for(path)
        if detected is None:
            raise CommandError(
                f"Cannot tell the format of {path.name!r} from its extension; pass --format jsonl, csv or newapi."
            )
        return detected

    def _account(self, slug: str | None) -> Account:
        if slug:
            account = Account.objects.filter(slug=slug).first()
            if account is None:
                raise CommandError(f"No account with slug {slug!r}. Accounts: {self._slugs() or 'none'}.")
            return account
        accounts = list(Account.objects.order_by("slug")[:2])
        if len(accounts) == 1:
            return accounts[0]
        if not accounts:
            raise CommandError("No account exists yet; create one with `manage.py create_account`.")
        raise CommandError(f"Several accounts exist; choose one with --account: {self._slugs()}.")

    def _slugs(self) -> str:
        return ", ".join(Account.objects.order_by("slug").values_list("slug", flat=True))

    def _run(
        self, account: Account, path: Path, import_format: ImportFormat, batch_size: int, every: float | None
    ) -> ImportSummary:
        on_terminal = self.stderr.isatty() and sys.stderr.isatty()
        size = path.stat().st_size
        with tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=path.name,
            file=sys.stderr,
            disable=not on_terminal,
            leave=False,
        ) as bar:

            def report(message: str) -> None:
                if on_terminal:
                    bar.write(message, file=sys.stderr)
                else:
                    self.stderr.write(message)

            def draw(snapshot: Snapshot) -> None:
                bar.update(snapshot.bytes_read - bar.n)
                bar.set_postfix_str(  # drawn now: the snapshots are already spaced out
                    f"{snapshot.rows_read:,} rows, {snapshot.stored:,} stored, "
                    f"{snapshot.duplicates:,} duplicates, {snapshot.rejected:,} rejected"
                )

            def print_line(snapshot: Snapshot) -> None:
                if not snapshot.done:  # the summary follows the last one
                    self.stdout.write(f"{path.name}: {snapshot.line()}")

            if every is None:
                every = BAR_PROGRESS_SECONDS if on_terminal else PLAIN_PROGRESS_SECONDS
            progress = ImportProgress(draw if on_terminal else print_line, bytes_total=size, interval=every)
            return run_import(
                account, path, import_format, progress=progress, report=report, batch_size=batch_size
            ).summary

    def _print_summary(self, summary: ImportSummary, elapsed: float, account: Account) -> None:
        rate = summary.valid / elapsed if elapsed > 0 else 0.0
        skipped = f"{summary.skipped:,} skipped"
        if summary.skipped_why:
            skipped += " (" + ", ".join(f"{n:,} {why}" for why, n in sorted(summary.skipped_why.items())) + ")"
        duplicates = f"{summary.duplicates:,} duplicates"
        if summary.other_source_duplicates:
            duplicates += f" ({summary.other_source_duplicates:,} already recorded by another source)"
        self.stdout.write(
            f"Read {summary.read:,} rows into {account.slug!r}: {summary.accepted:,} accepted, "
            f"{duplicates}, {summary.conflicts:,} conflicts, "
            f"{summary.rejected:,} rejected, {skipped}"
            + (f", {summary.set_aside:,} set aside." if summary.set_aside else ".")
        )
        self.stdout.write(f"Elapsed {elapsed:.2f} s, {rate:,.0f} records/s.")
        if summary.rejected or summary.conflicts:
            self.stdout.write(
                "Every valid record is stored; the rejected rows and conflicts are listed on stderr. "
                "Fix them and run again: stored records will count as duplicates."
            )
