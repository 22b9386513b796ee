"""Fill a database with realistic usage for the benchmarks (bench/pages.py reads it).

    .venv/bin/python bench/generate.py [--records 1000000] [--days 60] [--account bench] [--reset]
                                       [--database-url postgres://toki:toki@127.0.0.1:5432/toki_bench]

Records come from bench/_common.generate_records (eight models with their own traffic
share and sizes, twenty keys in five teams, 3% failed calls of the common causes, 8%
without usage so that tokens are estimated, cached and reasoning tokens, latencies),
oldest first, ending ten minutes ago. They go through the production ingestion path
(validation, pricing, estimation, record and rollup in one transaction per batch, the
import's writer thread), so the rollups are built exactly as in production; at the end
they are checked against a recount of the records (usage.rollups.verify).

Running it again with the same --seed stores nothing twice (the request ids repeat);
--reset first empties the account's records, rollups and allocations.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BENCH_DATABASE_URL, generate_records, machine, setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--account", default="bench", help="account slug (created when missing)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=5000, help="records per transaction (default 5000)")
    parser.add_argument("--reset", action="store_true", help="empty the account first")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", BENCH_DATABASE_URL))
    args = parser.parse_args()

    setup_django(args.database_url)
    from django.core.management import call_command

    from bench._common import ensure_account

    call_command("migrate", verbosity=0)
    print(f"machine: {machine()}")
    account = ensure_account(args.account)
    if args.reset:
        _empty(account)
    problems = _import(account, args)
    _analyze()
    if not _rollups_verified(account) or problems:
        sys.exit(1)


def _empty(account: Any) -> None:
    """Delete the account's records, rollups and allocations."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM billing_allocation WHERE record_id IN "
            "(SELECT id FROM usage_usagerecord WHERE account_id = %s)",
            [account.pk],
        )
        for table in ("usage_callkey", "usage_callsighting", "usage_usagerecord", "usage_registeredrequest"):
            cursor.execute(f"DELETE FROM {table} WHERE account_id = %s", [account.pk])
        cursor.execute("DELETE FROM usage_hourlyusage WHERE account_id = %s", [account.pk])
        cursor.execute("DELETE FROM usage_dailyusage WHERE account_id = %s", [account.pk])
        cursor.execute("DELETE FROM usage_latencyhistogram WHERE account_id = %s", [account.pk])
    print(f"emptied account {account.slug!r}")


def _import(account: Any, args: argparse.Namespace) -> list[str]:
    """Store the generated records through the import path, timed; the problems it reported."""
    from usage.importers import Row, Source, import_records

    def rows() -> Iterator[Row]:
        for number, record in enumerate(generate_records(args.records, days=args.days, seed=args.seed), 1):
            yield Row(number, record)
            if number % 100_000 == 0:
                print(f"  {number:,} records", flush=True)

    problems: list[str] = []
    started = time.perf_counter()
    summary = import_records(
        account, Source(rows(), "record", lambda: 0), batch_size=args.batch, report=problems.append
    )
    elapsed = time.perf_counter() - started
    print(
        f"{summary.accepted:,} stored, {summary.duplicates:,} already there, {summary.rejected:,} rejected "
        f"in {elapsed:.1f} s ({summary.valid / elapsed:,.0f} records/s)"
    )
    for problem in problems[:5]:
        print(f"  {problem}")
    return problems


def _analyze() -> None:
    """Fresh planner statistics on PostgreSQL, as after autovacuum."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table in ("usage_usagerecord", "usage_hourlyusage", "usage_dailyusage", "usage_apikey"):
                cursor.execute(f"VACUUM ANALYZE {table}")


def _rollups_verified(account: Any) -> bool:
    """Whether the rollups equal a recount of the records (usage.rollups.verify), said."""
    from usage import rollups
    from usage.models import HourlyUsage, UsageRecord

    records = UsageRecord.objects.filter(account=account).count()
    groups = HourlyUsage.objects.filter(account=account).count()
    started = time.perf_counter()
    mismatches = rollups.verify(account)
    print(
        f"account {account.slug!r}: {records:,} records, {groups:,} hourly rollup rows; "
        f"rollups equal a recount: {not mismatches} (checked in {time.perf_counter() - started:.1f} s)"
    )
    return not mismatches


if __name__ == "__main__":
    main()
