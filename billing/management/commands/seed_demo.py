from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.demo import seed_demo_billing
from usage.catalogue.demo import seed_demo_catalogue
from usage.demo import MAX_DAYS, seed_demo_usage


class Command(BaseCommand):
    help = (
        "Load the demo data set: users, an account, prices, keys, N days of usage up to this hour, "
        "plans, purchases, top-ups, console balances and a model catalogue (idempotent)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--days", type=int, default=60, help=f"days of usage, 1..{MAX_DAYS} (default 60)")
        parser.add_argument("--seed", type=int, default=1, help="the same seed gives the same data (default 1)")

    def handle(self, *args: Any, **options: Any) -> None:
        days, seed = options["days"], options["seed"]
        if not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days must be between 1 and {MAX_DAYS}, not {days}.")
        started = time.perf_counter()
        report = seed_demo_usage(days=days, seed=seed)
        billing = seed_demo_billing(report.account, report.window)
        seed_demo_catalogue(report.account)
        elapsed = time.perf_counter() - started
        ingested, window = report.ingested, report.window
        self.stdout.write(
            f"Demo data for account {report.account.slug!r} (seed {seed}), "
            f"{window.start:%Y-%m-%d %H:%M} to {window.until:%Y-%m-%d %H:%M} UTC:\n"
            f"  {ingested.accepted:,} records added, {ingested.duplicates:,} duplicates, "
            f"{len(ingested.conflicts):,} conflicts in {elapsed:.1f} s "
            f"({report.hours_generated:,} hours generated, {report.hours_skipped:,} already seeded; "
            f"{report.users_created} users and {report.prices_created} prices created).\n"
            f"  Billing: {billing.purchases_created} purchases, {billing.entries_created} wallet entries and "
            f"{billing.snapshots_created} console balances added; {billing.records_allocated:,} records allocated."
        )
