"""The query plans behind the slowest pages (bench/README.md, "10 million records").

    .venv/bin/python bench/explain_pages.py [--pages 3] [--statements 2] [--only NAME] [--account bench]
                                            [--database-url postgres://toki:toki@127.0.0.1:5432/toki_bench]

Every page bench/pages.py times is requested (after a warm-up) three times with each SQL
statement timed; the `--pages` pages with the highest median server time are kept, and for
each its `--statements` slowest reads are run again under `EXPLAIN (ANALYZE, BUFFERS)` with
the same parameters (reads only: EXPLAIN ANALYZE would carry out a write), and the plans
printed. PostgreSQL only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BENCH_DATABASE_URL, machine, setup_django

TIMED = 3


@dataclass
class Statement:
    sql: str
    params: Any
    ms: float


@dataclass
class PageTiming:
    label: str
    url: str
    ms: list[float] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)


def time_page(client: Any, label: str, url: str, headers: dict[str, str]) -> PageTiming:
    from django.db import connection

    timing = PageTiming(label, url)

    def get() -> None:
        response = client.get(url, headers=headers)
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timing.statements.append(Statement(sql, params, (time.perf_counter() - started) * 1000))

    get()  # warm-up
    for attempt in range(TIMED):
        if attempt == TIMED - 1:
            with connection.execute_wrapper(record):
                started = time.perf_counter()
                get()
        else:
            started = time.perf_counter()
            get()
        timing.ms.append((time.perf_counter() - started) * 1000)
    return timing


def explain(statement: Statement) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement.sql}", statement.params)
        return "\n".join(line for (line,) in cursor.fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--statements", type=int, default=2)
    parser.add_argument("--only", help="only pages whose label or URL name contains this")
    parser.add_argument("--account", default="bench")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", BENCH_DATABASE_URL))
    args = parser.parse_args()

    setup_django(args.database_url)
    from django.core.management import call_command
    from django.test.utils import setup_test_environment
    from django.urls import NoReverseMatch, reverse

    from bench.pages import clients, specs
    from usage.models import Account

    setup_test_environment()
    call_command("collectstatic", interactive=False, verbosity=0)
    account = Account.objects.get(slug=args.account)
    print(f"before: {machine()}")
    by_role = clients(account)
    timings = []
    for spec in specs(account):
        if args.only and args.only not in spec.label and args.only not in spec.url_name:
            continue
        try:
            url = reverse(spec.url_name, args=spec.args())
        except (NoReverseMatch, IndexError):
            continue
        url = f"{url}?{urlencode({'account': account.slug, **spec.query()})}"
        headers = {"HX-Request": "true"} if spec.htmx else {}
        timings.append(time_page(by_role[spec.role], spec.label, url, headers))
    timings.sort(key=lambda t: statistics.median(t.ms), reverse=True)
    for timing in timings[: args.pages]:
        sql_ms = sum(s.ms for s in timing.statements)
        print(
            f"\n## {timing.label}: median {statistics.median(timing.ms):.1f} ms, "
            f"{len(timing.statements)} statements taking {sql_ms:.1f} ms\n{timing.url}"
        )
        reads = [s for s in timing.statements if s.sql.lstrip().upper().startswith(("SELECT", "WITH"))]
        for statement in sorted(reads, key=lambda s: s.ms, reverse=True)[: args.statements]:
            print(f"\n### {statement.ms:.1f} ms\n{statement.sql}\n{explain(statement)}")
    print(f"\nafter: {machine()}")


if __name__ == "__main__":
    main()
