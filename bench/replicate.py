"""Grow the benchmark data to millions of records in minutes (bench/README.md, "10 million records").

    .venv/bin/python bench/generate.py --records 1000000 --days 60
    .venv/bin/python bench/replicate.py --to 10000000 --accounts 3 [--source bench]
                                        [--database-url postgres://toki:toki@127.0.0.1:5432/toki_bench]

Sending ten million records through the ingestion path would take about half an hour of
Python on a 2-core machine, and would measure the ingestion path again rather than the
pages. So `bench/generate.py` sends a first batch through production (validation, pricing,
estimation, rollups), and this script copies those records inside PostgreSQL, with one
`INSERT … SELECT` per copy, until the database holds `--to` records spread over `--accounts`
accounts (`<source>`, `<source>-2`, …):

- each copy gets its own request ids (`<id>~<copy>`) and is moved back in time by
  `copy × 41 s`, so the traffic keeps its daily and weekly shape and a 30-day window
  holds the same share of it;
- keys and prices are the target account's own (matched on fingerprint and model);
- the registry of request ids gets a row per copied record, as ingestion would write;
- then each account's rollups are rebuilt from its records with `usage.rollups.rebuild`
  (what `manage.py rebuild_rollups` runs), timed, and checked against a recount.

Run again, it adds nothing: copies already present are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BENCH_DATABASE_URL, machine, setup_django

SHIFT_SECONDS = 41  # each copy's records move back in time by copy × this
# Columns computed per copy; every other column of the records is copied as it is.
COMPUTED = ("id", "account_id", "api_key_id", "price_id", "request_id", "occurred_at")


def record_columns(cursor: Any) -> list[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'usage_usagerecord' AND table_schema = current_schema() ORDER BY ordinal_position"
    )
    return [name for (name,) in cursor.fetchall() if name not in COMPUTED]


def copy_records(cursor: Any, columns: list[str], source: Any, target: Any, copy: int) -> int:
    """Copy the source account's original records into `target` as copy number `copy`."""
    plain = ", ".join(columns)
    from_source = ", ".join(f"r.{name}" for name in columns)
    shift = f"interval '{copy * SHIFT_SECONDS} seconds'"
    cursor.execute(
        f"""
        INSERT INTO usage_usagerecord (account_id, api_key_id, price_id, request_id, occurred_at, {plain})
        SELECT %(target)s, tk.id, tp.id, r.request_id || '~' || %(copy)s, r.occurred_at - {shift}, {from_source}
        FROM usage_usagerecord r
        LEFT JOIN usage_apikey sk ON sk.id = r.api_key_id
        LEFT JOIN usage_apikey tk ON tk.account_id = %(target)s AND tk.fingerprint = sk.fingerprint
        LEFT JOIN usage_modelprice sp ON sp.id = r.price_id
        LEFT JOIN usage_modelprice tp ON tp.account_id = %(target)s AND tp.model_pattern = sp.model_pattern
            AND tp.effective_from = sp.effective_from
        WHERE r.account_id = %(source)s AND position('~' in r.request_id) = 0
        """,
        {"target": target.pk, "source": source.pk, "copy": copy},
    )
    copied = cursor.rowcount
    cursor.execute(
        f"""
        INSERT INTO usage_registeredrequest (account_id, request_id, occurred_at, content_hash)
        SELECT %(target)s, r.request_id || '~' || %(copy)s, r.occurred_at - {shift}, r.content_hash
        FROM usage_registeredrequest r
        WHERE r.account_id = %(source)s AND position('~' in r.request_id) = 0
        ON CONFLICT DO NOTHING
        """,
        {"target": target.pk, "source": source.pk, "copy": copy},
    )
    return copied


def copy_keys(source: Any, target: Any) -> None:
    from usage.models import ApiKey

    known = set(ApiKey.objects.filter(account=target).values_list("fingerprint", flat=True))
    ApiKey.objects.bulk_create(
        [
            ApiKey(account=target, fingerprint=key.fingerprint, name=key.name, last4=key.last4, team=key.team)
            for key in ApiKey.objects.filter(account=source)
            if key.fingerprint not in known
        ]
    )


def copy_present(cursor: Any, target: Any, copy: int) -> bool:
    cursor.execute(
        "SELECT 1 FROM usage_registeredrequest WHERE account_id = %s AND request_id LIKE %s LIMIT 1",
        [target.pk, f"%~{copy}"],
    )
    return cursor.fetchone() is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--to", type=int, default=10_000_000, help="records wanted in all, over every account")
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--source", default="bench", help="slug of the account bench/generate.py filled")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", BENCH_DATABASE_URL))
    args = parser.parse_args()

    setup_django(args.database_url)
    from django.db import connection

    from bench._common import ensure_account
    from usage.models import Account, UsageRecord
    from usage.partitions import ensure_partitions

    print(f"machine: {machine()}")
    source = Account.objects.get(slug=args.source)
    originals = UsageRecord.objects.filter(account=source).exclude(request_id__contains="~").count()
    copies = max(0, -(-args.to // originals) - 1)  # ceiling: the originals count as the first
    targets = [source] + [ensure_account(f"{args.source}-{n}") for n in range(2, args.accounts + 1)]
    print(f"{originals:,} original records in {source.slug!r}; {copies} copies over {len(targets)} accounts")
    ensure_partitions()

    _copy_all(source, targets, copies)
    ensure_partitions()  # months the shifted copies reach back into
    with connection.cursor() as cursor:
        for table in ("usage_usagerecord", "usage_registeredrequest", "usage_apikey"):
            cursor.execute(f"VACUUM ANALYZE {table}")

    _rebuild_rollups(targets)
    with connection.cursor() as cursor:
        for table in ("usage_hourlyusage", "usage_dailyusage"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("SELECT count(*) FROM usage_usagerecord")
        print(f"{cursor.fetchone()[0]:,} records in the database; {machine()}")


def _copy_all(source: Any, targets: list[Any], copies: int) -> None:
    """Copy the source's original records `copies` times, to the target accounts in turn; timed."""
    from django.db import connection, transaction

    started = time.perf_counter()
    with connection.cursor() as cursor:
        columns = record_columns(cursor)
        for copy in range(1, copies + 1):
            # The originals stay in the source; copy n goes to the accounts in turn.
            target = targets[copy % len(targets)]
            copy_keys(source, target)
            if copy_present(cursor, target, copy):
                print(f"  copy {copy} into {target.slug!r}: already there")
                continue
            began = time.perf_counter()
            with transaction.atomic():
                copied = copy_records(cursor, columns, source, target, copy)
            seconds = time.perf_counter() - began
            print(
                f"  copy {copy} into {target.slug!r}: {copied:,} records in {seconds:.1f} s ({copied / seconds:,.0f}/s)"
            )
    print(f"copied in {time.perf_counter() - started:.0f} s")


def _rebuild_rollups(targets: list[Any]) -> None:
    """Rebuild each account's rollups and check them against a recount, timed."""
    from usage import rollups
    from usage.models import UsageRecord

    for account in targets:
        records = UsageRecord.objects.filter(account=account).count()
        began = time.perf_counter()
        groups = rollups.rebuild(account)
        rebuilt = time.perf_counter() - began
        began = time.perf_counter()
        mismatches = rollups.verify(account)
        print(
            f"account {account.slug!r}: {records:,} records; rollups rebuilt in {rebuilt:.1f} s ({groups:,} groups), "
            f"equal to a recount: {not mismatches} (checked in {time.perf_counter() - began:.1f} s)"
        )


if __name__ == "__main__":
    main()
