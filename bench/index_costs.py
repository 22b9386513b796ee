"""What each index and foreign key of the usage records costs on insert (bench/README.md).

    .venv/bin/python bench/index_costs.py [--records 50000] [--rounds 3]
                                          [--database-url postgres://toki:toki@127.0.0.1:5432/toki_bench]

Run it against the benchmark database as it is (10M records after bench/replicate.py): an
index costs more to keep as it grows. The same prepared rows (the production row builder's,
as in bench/ingest.py) are COPY'd into `usage_usagerecord` once per variant, each inside a
transaction that is rolled back, so nothing is kept and the variants see the same table:

- `all`: the table as migrated (the baseline of the run);
- `without <index>`: that index dropped first (DDL is transactional in PostgreSQL);
- `without <foreign key>`: that constraint dropped first, then all of them together;
- `only the primary key`: every other index and every foreign key dropped;
- `with BRIN on occurred_at`: one more index, to price the candidate.

Each variant's rolled-back rows are vacuumed away before the next. Foreign keys are
deferred to commit in this schema; the run makes them immediate so their checks happen
inside the timed COPY. Variants alternate round by round and the median of
the rounds is printed, with its ratio to `all` in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BENCH_DATABASE_URL, generate_records, machine, setup_django

Setup = Callable[[Any], None]


def indexes_and_keys(cursor: Any) -> tuple[list[str], list[str]]:
    cursor.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'usage_usagerecord' AND schemaname = current_schema() "
        "AND indexname <> 'usage_usagerecord_pkey' ORDER BY indexname"
    )
    indexes = [name for (name,) in cursor.fetchall()]
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'usage_usagerecord'::regclass AND contype = 'f' "
        "ORDER BY conname"
    )
    return indexes, [name for (name,) in cursor.fetchall()]


def variants(indexes: list[str], keys: list[str]) -> dict[str, Setup]:
    def drop(statements: list[str]) -> Setup:
        def run(cursor: Any) -> None:
            for statement in statements:
                cursor.execute(statement)

        return run

    drop_index = [f"DROP INDEX {name}" for name in indexes]
    drop_key = [f"ALTER TABLE usage_usagerecord DROP CONSTRAINT {name}" for name in keys]
    found: dict[str, Setup] = {"all": drop([])}
    found |= {f"without {name}": drop([statement]) for name, statement in zip(indexes, drop_index, strict=True)}
    found |= {f"without {name}": drop([statement]) for name, statement in zip(keys, drop_key, strict=True)}
    found["without every foreign key"] = drop(drop_key)
    found["only the primary key"] = drop(drop_index + drop_key)
    found["with BRIN on occurred_at"] = drop(["CREATE INDEX bench_brin ON usage_usagerecord USING brin (occurred_at)"])
    return found


def timed_copy(data: bytes, columns: str, setup: Setup) -> float:
    """Seconds to COPY `data` after `setup`, foreign keys checked immediately; rolled back."""
    from django.db import connection, transaction

    block = 1 << 20
    with connection.cursor() as cursor:
        try:
            with transaction.atomic():
                setup(cursor)
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                started = time.perf_counter()
                with cursor.cursor.copy(f"COPY usage_usagerecord ({columns}) FROM STDIN") as copy:
                    for start in range(0, len(data), block):
                        copy.write(data[start : start + block])
                seconds = time.perf_counter() - started
                raise _RollBack(seconds)
        except _RollBack as done:
            return done.seconds


def vacuum_rolled_back_rows() -> None:
    """Clear the rolled-back rows' dead entries, so that no variant pays for the previous one's."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM usage_usagerecord")


class _RollBack(Exception):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", BENCH_DATABASE_URL))
    args = parser.parse_args()

    setup_django(args.database_url)
    from django.db import connection

    from bench._common import ensure_account
    from bench.ingest import copy_text

    # Not migrated here: the table is measured as it stands (bench/generate.py migrated it).
    print(f"before: {machine()}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM usage_usagerecord")
        print(f"{cursor.fetchone()[0]:,} records in the table")
        indexes, keys = indexes_and_keys(cursor)
    records = list(generate_records(args.records, days=1, seed=7))
    data, columns = copy_text(ensure_account("bench-index"), records)
    timings: dict[str, list[float]] = {}
    found = variants(indexes, keys)
    for _ in range(args.rounds):
        for name, setup in found.items():
            timings.setdefault(name, []).append(timed_copy(data, columns, setup))
            vacuum_rolled_back_rows()
    baseline = statistics.median(timings["all"])
    print(f"COPY of {args.records:,} rows, median of {args.rounds} rounds, each rolled back:")
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        print(f"  {name:<66} {args.records / median:>9,.0f} rows/s  {baseline / median:5.2f}× the table as migrated")
    print(f"after: {machine()}")


if __name__ == "__main__":
    main()
