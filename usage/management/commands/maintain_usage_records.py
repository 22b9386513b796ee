from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from usage import partitions


class Command(BaseCommand):
    help = (
        "Create the PostgreSQL partitions of the usage records for this month and the months ahead, "
        "and drop raw months older than RAW_RETENTION_MONTHS (what the daily scheduled task does)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--ahead", type=int, default=None, help=f"months ahead (default {settings.USAGE_PARTITIONS_AHEAD})"
        )
        parser.add_argument("--no-retention", action="store_true", help="create partitions only, drop nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_retention"]:
            done = partitions.apply_retention()
            if done.kept_from is None:
                self.stdout.write("Retention: RAW_RETENTION_MONTHS is not set, every raw record is kept.")
            else:
                self.stdout.write(
                    f"Retention: raw records kept from {done.kept_from:%Y-%m-%d}; "
                    f"{len(done.dropped)} partitions dropped ({', '.join(done.dropped) or 'none'}), "
                    f"{done.deleted_rows} rows deleted."
                )
        if not partitions.is_partitioned():
            self.stdout.write("Partitions: the records are one table on this database (SQLite); nothing to create.")
            return
        created = partitions.ensure_partitions(ahead=options["ahead"])
        self.stdout.write(f"Partitions: {len(created)} created ({', '.join(created) or 'all there already'}).")
