"""EXPLAIN (ANALYZE, BUFFERS) of the queries each index of the usage records is kept for.

    .venv/bin/python bench/generate.py --records 200000 --database-url postgres://…/toki_bench
    .venv/bin/python bench/explain_records.py [--account bench] [--database-url postgres://…/toki_bench]

Runs on PostgreSQL against data bench/generate.py wrote (monthly partitions included). Each
query is the one the page or API runs (built by the same functions), named after it; for
each it prints the execution time, the shared buffers hit and read, the indexes the plan
uses and how many partitions it reads, then the plan itself. Every query runs once to warm
the cache and is measured on the second run. The load average is printed before and after.
Index justification lives next to each index in usage.models.UsageRecord.Meta.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BENCH_DATABASE_URL, machine, setup_django


def queries(account: Any) -> dict[str, Callable[[], Any]]:
    """Name → a function returning the queryset the named page or API runs."""
    from django.db.models import Count, Max

    from billing.recompute import RECORD_FIELDS
    from usage.models import ErrorCause, UsageRecord
    from usage.selectors import requestlog

    newest = UsageRecord.objects.filter(account=account).order_by("-occurred_at", "-id").first()
    end = newest.occurred_at + timedelta(seconds=1)
    start = end - timedelta(days=30)
    filters = requestlog.RecordFilters(start=start, end=end)
    base = requestlog.filtered(account, filters)
    # A cursor 90% of the way down the 30 days: the request log "at any depth".
    deep = base[int(base.count() * 0.9)]
    when, pk = deep.occurred_at, deep.pk
    top_model = (
        UsageRecord.objects.filter(account=account, occurred_at__gte=start)
        .values("model")
        .annotate(n=Count("id"))
        .order_by("-n")[0]["model"]
    )
    from django.db.models import Q

    def failed() -> Any:
        rows = UsageRecord.objects.filter(account=account, occurred_at__gte=start, occurred_at__lt=end)
        rows = rows.exclude(error_cause=ErrorCause.NONE)
        return rows.values("error_cause").annotate(n=Count("id"), last=Max("occurred_at")).order_by("-n")

    return {
        "request log, first page (GET /requests/, GET /api/v1/usage/records)": lambda: base[:51],
        "request log, page at 90% depth (keyset cursor)": lambda: base.filter(
            Q(occurred_at__lt=when) | Q(occurred_at=when, id__lt=pk), occurred_at__lte=when
        )[:51],
        "request log filtered on a model": lambda: requestlog.filtered(
            account, requestlog.RecordFilters(start=start, end=end, model=top_model)
        )[:51],
        "request log, failed only": lambda: requestlog.filtered(
            account, requestlog.RecordFilters(start=start, end=end, failed=True)
        )[:51],
        "errors page: failed requests by cause (30 days)": failed,
        "model page: latency percentiles (30 days)": lambda: (
            UsageRecord.objects.filter(
                account=account, model=top_model, occurred_at__gte=start, occurred_at__lt=end, latency_ms__isnull=False
            )
            .order_by("latency_ms")
            .values_list("latency_ms", flat=True)
        ),
        "allocation recompute: records from a checkpoint 1 day back": lambda: (
            UsageRecord.objects.filter(account=account, occurred_at__gte=end - timedelta(days=1))
            .order_by("occurred_at", "request_id")
            .values_list(*RECORD_FIELDS, "api_key_id", "team")[:2000]
        ),
    }


def summarise(plan: dict[str, Any], parents: dict[str, str]) -> dict[str, Any]:
    """Time, buffers, indexes (by the name of the index on the partitioned table) and
    partitions of a JSON plan."""
    indexes: set[str] = set()
    relations: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        if "Relation Name" in node:
            relations.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    top = plan["Plan"]
    walk(top)
    return {
        "ms": plan["Execution Time"],
        "hit": top.get("Shared Hit Blocks", 0),
        "read": top.get("Shared Read Blocks", 0),
        "indexes": sorted({parents.get(i, i) for i in indexes}),
        "partitions": len([r for r in relations if r.startswith("usage_usagerecord_")]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--account", default="bench")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", BENCH_DATABASE_URL))
    parser.add_argument("--plans", action="store_true", help="print every plan in full too")
    args = parser.parse_args()
    setup_django(args.database_url)
    from django.db import connection

    from usage import partitions
    from usage.models import Account, UsageRecord

    print(f"before: {machine()}")
    account = Account.objects.get(slug=args.account)
    # Data generated before its months had partitions sits in the default partition: the
    # daily task moves each month into a partition of its own, as it does in production.
    began = time.perf_counter()
    created = partitions.ensure_partitions()
    if created:
        print(
            f"partitions created (months moved out of the default): {', '.join(created)} "
            f"in {time.perf_counter() - began:.1f} s"
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE usage_usagerecord")
    total = UsageRecord.objects.filter(account=account).count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", ["usage_usagerecord"])
        cursor.execute(
            "SELECT pg_size_pretty(sum(pg_relation_size(i.indexrelid))) FROM pg_index i "
            "JOIN pg_inherits h ON h.inhrelid = i.indrelid WHERE h.inhparent = 'usage_usagerecord'::regclass"
        )
        index_size = cursor.fetchone()[0]
    print(
        f"{total:,} records of account {args.account!r}, {len(partitions.partitions())} partitions, "
        f"indexes {index_size}"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, p.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE c.relkind = 'i'"
        )
        parents = dict(cursor.fetchall())
    print(f"{'query':<72} {'ms':>8} {'hit':>7} {'read':>6} {'parts':>5}  indexes")
    for name, build in queries(account).items():
        queryset = build()
        queryset.explain(analyze=True)  # warm the cache
        raw = queryset.explain(analyze=True, buffers=True, format="json")
        plan = json.loads(raw)[0] if isinstance(raw, str) else raw[0]
        s = summarise(plan, parents)
        print(
            f"{name:<72} {s['ms']:>8.2f} {s['hit']:>7} {s['read']:>6} {s['partitions']:>5}  {', '.join(s['indexes'])}"
        )
        if args.plans:
            print(queryset.explain(analyze=True, buffers=True))
            print()
    print(f"after: {machine()}")


if __name__ == "__main__":
    main()
